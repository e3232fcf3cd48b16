"""How a steering vector edits the residual stream: ``(hidden, vector, alpha) -> delta``.

hidden (B, t, D) the states of the steered positions, vector (D,) in the same dtype and device,
or (B, 1, D) for per-sample vectors (row b for sample b); the result (B, t, D) is added to
hidden (positions the rule leaves alone get no delta).

  add          delta = alpha v
  project_out  delta = -alpha (h . v_hat) v_hat   (alpha = 1 removes the component along v)

Any function of the same shape works as ``operator=``; ``OPERATORS`` names the shipped ones for
the command line.
"""

from __future__ import annotations

from typing import Callable

import torch

from xlvlm.errors import XlvlmError
from xlvlm.steer.registry import OPERATORS  # the shipped ones by name (the command line's)

Operator = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def add(hidden: torch.Tensor, vector: torch.Tensor, alpha: float) -> torch.Tensor:
    """alpha v, broadcast over hidden (..., D)."""
    return (alpha * vector).expand_as(hidden)


def project_out(hidden: torch.Tensor, vector: torch.Tensor, alpha: float) -> torch.Tensor:
    """-alpha (h . v_hat) v_hat: (..., D) -> (..., D); v_hat normalised per vector (per row)."""
    unit = vector / vector.float().norm(dim=-1, keepdim=True).clamp_min(1e-12).to(vector.dtype)
    return -alpha * (hidden * unit).sum(dim=-1, keepdim=True) * unit


def operator_named(operator) -> Operator:
    """A callable as is; a name through ``OPERATORS`` (the command line's choices)."""
    if callable(operator):
        return operator
    try:
        return OPERATORS[operator]
    except (KeyError, TypeError):
        raise XlvlmError(f"unknown operator {operator!r}: use one of {tuple(OPERATORS)} or a function") from None
