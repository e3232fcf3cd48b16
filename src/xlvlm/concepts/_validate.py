"""Turning user input into the float32 (N, D) matrix the methods expect, with one-line errors."""

from __future__ import annotations

import numpy as np
import torch

from xlvlm.errors import XlvlmError


def as_features(X, device=None, name: str = "X") -> torch.Tensor:
    """X: torch.Tensor or array-like (N, D), any real dtype -> float32 tensor (N, D).

    Stays on X's device unless ``device`` is given; never modifies X in place. Rejects a wrong
    rank, an empty matrix and NaN/inf rows.
    """
    if isinstance(X, torch.Tensor):
        Z = X.detach()
    else:
        try:
            Z = torch.as_tensor(np.asarray(X))
        except (TypeError, ValueError) as exc:
            raise XlvlmError(f"{name} is not a numeric matrix ({exc}); pass a torch.Tensor or numpy array (N, D)")
    if Z.is_complex() or Z.dtype == torch.bool:
        raise XlvlmError(f"{name} has dtype {Z.dtype}; pass real-valued features")
    if device is not None:
        try:
            Z = Z.to(device)
        except (RuntimeError, AssertionError) as exc:
            raise XlvlmError(f"cannot use device {str(device)!r} ({str(exc).splitlines()[0]}); use device='cpu'")
    Z = Z.to(torch.float32)
    if Z.ndim != 2:
        raise XlvlmError(f"{name} has shape {tuple(Z.shape)}; pass a 2-D matrix (N samples, D features)")
    if Z.shape[0] == 0 or Z.shape[1] == 0:
        raise XlvlmError(f"{name} is empty (shape {tuple(Z.shape)}); extract features for at least one sample first")
    # A row sum is non-finite whenever the row holds NaN/inf (or overflows): check only those
    # rows entry by entry, instead of a full (N, D) boolean pass over a large matrix.
    suspicious = ~torch.isfinite(Z.sum(1))
    bad_rows = int((~torch.isfinite(Z[suspicious])).any(1).sum()) if bool(suspicious.any()) else 0
    if bad_rows:
        raise XlvlmError(
            f"{name} has {bad_rows} of {Z.shape[0]} rows with NaN or inf; drop them first, e.g. "
            "store.features(layer, present_only=True) leaves out samples where no token was selected"
        )
    return Z
