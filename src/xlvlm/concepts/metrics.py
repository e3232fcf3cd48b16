"""Model-free metrics of a concept dictionary.

Notation (``xlvlm.concepts``): the features Z (N, D) (passed as X), U (N, K) activations,
V (K, D) components; W_k the set of words grounded for concept k.
"""

from __future__ import annotations

from typing import Sequence

import torch

from xlvlm.concepts._validate import as_features
from xlvlm.errors import XlvlmError


def overlap(word_lists: Sequence[Sequence[str]], count_duplicates: bool = False) -> float:
    """Overlap of grounded words between concepts (CoX-LMM); lower means more disentangled.

    With W_i the *set* of concept i's words (duplicates count once, words compare exactly as
    given), the mean over the K (K - 1) ordered pairs i != j of |W_i ∩ W_j| / |W_i|: the
    fraction of concept i's words that concept j also has. A concept with no words shares
    nothing (its fractions are 0). In [0, 1]: 0 when no word is shared, 1 when all concepts
    have the same words. Needs K >= 2.

    count_duplicates: the research code's count, over the *list* w_i of concept i's words:
    #{t : w_i[t] in w_j} / len(w_i), so a word listed twice in w_i (reached by two tokens)
    counts twice, above and below.
    """
    if len(word_lists) < 2:
        raise XlvlmError(f"overlap needs the words of at least two concepts, got {len(word_lists)}")
    total = 0.0
    for i, first in enumerate(word_lists):
        for j, second in enumerate(word_lists):
            if i == j or not first:
                continue
            if count_duplicates:
                others = set(second)
                total += sum(word in others for word in first) / len(first)
            else:
                total += len(set(first) & set(second)) / len(set(first))
    return total / (len(word_lists) * (len(word_lists) - 1))


def reconstruction_r2(X, cd, activations=None) -> float:
    """Coefficient of determination of the reconstruction: X (N, D), cd a ConceptDictionary.

    R^2 = 1 - sum ||X_n - X_hat_n||^2 / sum ||X_n - mean(X)||^2, with
    X_hat = cd.inverse_transform(activations), activations = cd.transform(X) unless given
    (N, K). 1 is perfect; 0 is no better than the mean row. Accumulated in float64.
    """
    Z = as_features(X, device=cd.device)
    U = cd.transform(Z) if activations is None else activations
    Z_hat = cd.inverse_transform(U)
    Z64 = Z.double()
    total = float((Z64 - Z64.mean(0)).square().sum())
    if total == 0.0:
        raise XlvlmError("X has identical rows (zero variance); R^2 is undefined")
    return 1.0 - float((Z64 - Z_hat.double()).square().sum()) / total


def sparsity(activations, rtol: float = 1e-6) -> float:
    """Fraction of near-zero activations: entries of U (N, K) with |U_nk| <= rtol * max|U|.

    In [0, 1]; higher is sparser. All-zero U counts as fully sparse.
    """
    U = as_features(activations, name="activations")
    threshold = rtol * float(U.abs().max())
    return float((U.abs() <= threshold).double().mean())


def dead_concepts(activations, by: str = "top1", rtol: float = 1e-6) -> int:
    """Number of concepts no sample uses: U (N, K) -> count in [0, K].

    by="top1": concepts that are the most active concept (row argmax, first on ties) of no
    sample. by="active": concepts whose activation never exceeds rtol * max|U| on any sample.
    """
    U = as_features(activations, name="activations")
    if by == "top1":
        used = torch.bincount(U.argmax(1), minlength=U.shape[1]) > 0
    elif by == "active":
        used = (U > rtol * float(U.abs().max())).any(0)
    else:
        raise XlvlmError(f"unknown dead-concept criterion {by!r}; use 'top1' or 'active'")
    return int((~used).sum())
