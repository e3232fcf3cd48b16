"""Grounding concepts in images: each concept's most-activating samples (MAS)."""

from __future__ import annotations

from typing import Sequence

import torch

from xlvlm.concepts._validate import as_features
from xlvlm.errors import XlvlmError


def ground_images(
    activations, samples: Sequence[dict] | None = None, top_k: int = 20, positive_only: bool = True
) -> list[list[int]]:
    """Indices of each concept's most-activating samples: activations (N, K) -> K lists of <= top_k ints.

    Each list is ordered by decreasing activation; ties keep sample order. ``samples`` (N
    records, e.g. ``store.samples``) is optional: records with ``present`` False (no token
    was selected) are left out. With ``positive_only`` (default) a sample whose activation is
    <= 0 does not count as activating the concept, so a rarely used concept gets a short list
    rather than arbitrary filler.
    """
    U = as_features(activations, name="activations").cpu()
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise XlvlmError(f"top_k must be a positive integer, got {top_k!r}")
    eligible = torch.ones(U.shape[0], dtype=torch.bool)
    if samples is not None:
        if len(samples) != U.shape[0]:
            raise XlvlmError(
                f"{len(samples)} samples but {U.shape[0]} activation rows; pass the samples the features came from"
            )
        eligible = torch.tensor([bool(s.get("present", True)) for s in samples], dtype=torch.bool)
    grounded = []
    for k in range(U.shape[1]):
        column = U[:, k]
        keep = eligible & (column > 0) if positive_only else eligible
        order = torch.sort(column, descending=True, stable=True).indices
        grounded.append([int(i) for i in order[keep[order]][:top_k]])
    return grounded
