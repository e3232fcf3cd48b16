"""Pieces every solver shares: the ridge-regularised Gram solve and the convergence loop.

Notation (``xlvlm.concepts``): U (N, K) codes, V (K, D) components, G = U^T U (K, K) a Gram
matrix, H (K, M) right-hand sides.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch


def ridge_solve(G: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """X = (G + eps I)^{-1} H for a Gram matrix G (K, K) and H (K, M) -> (K, M) float64.

    Solved in float64 (K is small, and squaring a condition number in float32 would lose
    digits), with eps = 1e-10 * mean(diag G): an unused concept (a zero row and column of G)
    gives a zero row instead of a singular matrix. This is the least-squares step of every
    linear method: V = argmin ||Z - U V||^2 is ridge_solve(U^T U, U^T Z), and the codes
    U = argmin ||Z - U V||^2 are ridge_solve(V V^T, V Z^T)^T.
    """
    G = G.double()
    eps = 1e-10 * G.diagonal().mean().clamp_min(1e-30)
    G = G + eps * torch.eye(G.shape[0], dtype=G.dtype, device=G.device)
    return torch.linalg.solve(G, H.double())


def until_converged(step: Callable[[], float], max_iter: int, tol: float) -> dict:
    """Run ``step`` (one iteration, returning the objective) until the objective's relative
    decrease falls to ``tol`` or after ``max_iter`` iterations.

    Stops at iteration t when f_{t-1} - f_t <= tol * |f_{t-1}| (so an objective that rises also
    stops it). Returns the diagnostics every fit reports: {"n_iter", "converged", "objective"}.
    """
    history: list[float] = []
    converged = False
    for _ in range(max_iter):
        history.append(float(step()))
        if len(history) > 1 and history[-2] - history[-1] <= tol * abs(history[-2]):
            converged = True
            break
    return {"n_iter": len(history), "converged": converged, "objective": history[-1] if history else None}


@contextlib.contextmanager
def flush_denormals():
    """Treat subnormal floats as zero for the duration (restored afterwards).

    Multiplicative and coordinate updates drive many codes towards zero; on x86 CPUs the
    arithmetic on subnormal floats falls to microcode and slowed a prototype about 30x.
    """
    # torch has no getter: probe whether a subnormal input is already read as zero.
    previous = (torch.tensor([1e-39]) * torch.tensor([1.0])).item() == 0.0
    torch.set_flush_denormal(True)  # returns False (and does nothing) where unsupported
    try:
        yield
    finally:
        torch.set_flush_denormal(previous)
