"""Turning user input into the float32 (N, D) matrix the methods expect, with one-line errors.

The errors are XlvlmErrors (the CLI prints them in one line) that are also the exceptions
scikit-learn's conventions ask for: bad values are a ValueError, an unfitted estimator a
NotFittedError; their wording carries the phrases scikit-learn's estimator checks look for.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import issparse
from sklearn.exceptions import NotFittedError

from xlvlm.errors import XlvlmError


class InputError(XlvlmError, ValueError):
    """Input or parameters a concept method cannot take."""


class InputTypeError(XlvlmError, TypeError):
    """Input of a type a concept method cannot take (a non-numeric entry)."""


class NotFitted(XlvlmError, NotFittedError):
    """transform (or another use) before fit."""


def _to_tensor(X, name: str) -> torch.Tensor:
    """A torch view or copy of X (tensor, numpy array or array-like); no dtype change yet."""
    if isinstance(X, torch.Tensor):
        return X.detach()
    if issparse(X):
        raise InputError(f"{name} is a sparse matrix; sparse input is not supported: pass {name}.toarray()")
    try:
        array = np.asarray(X)
        if array.dtype == object:
            array = array.astype(np.float64)
        elif array.dtype.kind == "c":
            raise InputError(f"Complex data not supported: {name} has dtype {array.dtype}; pass real-valued features")
        # torch cannot wrap a read-only array (e.g. a memory map) without copying it
        return torch.as_tensor(array if array.flags.writeable else array.copy())
    except TypeError as exc:
        raise InputTypeError(f"{name} holds a non-numeric entry ({exc}); pass a numeric matrix (N, D)") from None
    except (ValueError, RuntimeError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{name} is not a numeric matrix ({exc}); pass a torch.Tensor or numpy array (N, D)") from None


def as_features(X, device=None, name: str = "X") -> torch.Tensor:
    """X: torch.Tensor or array-like (N, D), any real dtype -> float32 tensor (N, D).

    Stays on X's device unless ``device`` is given; never modifies X in place. Rejects a wrong
    rank, an empty matrix, sparse or complex input and NaN/inf rows.
    """
    Z = _to_tensor(X, name)
    if Z.is_complex() or Z.dtype == torch.bool:
        raise InputError(f"Complex data not supported: {name} has dtype {Z.dtype}; pass real-valued features")
    if device is not None:
        try:
            Z = Z.to(device)
        except (RuntimeError, AssertionError) as exc:
            raise InputError(f"cannot use device {str(device)!r} ({str(exc).splitlines()[0]}); use device='cpu'")
    Z = Z.to(torch.float32)
    if Z.ndim != 2:
        raise InputError(f"{name} has shape {tuple(Z.shape)}; pass a 2-D matrix (N samples, D features). Reshape "
                         "your data with X.reshape(1, -1) for a single sample or X.reshape(-1, 1) for a single feature")
    if Z.shape[1] == 0:
        raise InputError(f"{name} is empty: found 0 feature(s) (shape={tuple(Z.shape)}) while a minimum of 1 is "
                         "required; extract features for at least one sample first")
    if Z.shape[0] == 0:
        raise InputError(f"{name} is empty: found 0 sample(s) (shape={tuple(Z.shape)}) while a minimum of 1 is "
                         "required; extract features for at least one sample first")
    # A row sum is non-finite whenever the row holds NaN/inf (or overflows): check only those
    # rows entry by entry, instead of a full (N, D) boolean pass over a large matrix.
    suspicious = ~torch.isfinite(Z.sum(1))
    bad_rows = int((~torch.isfinite(Z[suspicious])).any(1).sum()) if bool(suspicious.any()) else 0
    if bad_rows:
        raise InputError(
            f"{name} has {bad_rows} of {Z.shape[0]} rows with NaN or inf; drop them first, e.g. "
            "store.features(layer, present_only=True) leaves out samples where no token was selected"
        )
    return Z
