"""Non-negative (optionally L1-penalised) least-squares codes with the dictionary fixed.

Notation (``xlvlm.concepts``): Z (N, D) features, V (K, D) components held fixed, U (N, K)
codes to find.

Solves, for every row independently, ::

    min_U  0.5 ||Z - U V||_F^2 + l1 * sum(U)    subject to U >= 0

by cyclic projected coordinate descent (HALS). Only the Gram terms matter::

    A = Z V^T (N, K),   B = V V^T (K, K)
    for k in 1..K:  U[:, k] <- max(0, U[:, k] - ((U B)[:, k] - A[:, k] + l1) / B[k, k])

Each coordinate step is the exact minimiser along that coordinate, so the objective never
increases; the problem is convex (strictly when B is positive definite) and the iterates
converge to its minimiser from any start. All rows move together (one (N, K) column per
step), which keeps it vectorised on CPU and GPU.
"""

from __future__ import annotations

import torch

from xlvlm.concepts.solvers.common import flush_denormals, ridge_solve


def least_squares_codes(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Unconstrained codes argmin_U ||Z - U V|| from A = Z V^T (N, K), B = V V^T (K, K) -> (N, K).

    Solved through the (K, K) normal equations (``common.ridge_solve``): A^T = (B + eps I)^-1 A^T.
    """
    return ridge_solve(B, A.T).T.to(A.dtype)


def nonneg_codes(
    Z: torch.Tensor,
    V: torch.Tensor,
    l1: float = 0.0,
    init: torch.Tensor | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
) -> tuple[torch.Tensor, int]:
    """Codes U (N, K) >= 0 minimising 0.5 ||Z - U V||^2 + l1 * sum(U), with V (K, D) fixed.

    init: (N, K) start (clamped to >= 0); default: the clamped least-squares codes.
    Stops when no code moved by more than ``tol`` times the largest code during a sweep, or
    after ``max_iter`` sweeps. Returns (U, sweeps run).
    """
    A = Z @ V.T
    B = V @ V.T
    U = (least_squares_codes(A, B) if init is None else init).clamp_min(0).clone()
    diag = B.diagonal().clamp_min(1e-12)
    with flush_denormals():
        for sweep in range(1, max_iter + 1):
            largest_step = torch.zeros((), dtype=U.dtype, device=U.device)
            for k in range(U.shape[1]):
                gradient = U @ B[:, k] - A[:, k] + l1
                new = (U[:, k] - gradient / diag[k]).clamp_min(0)
                largest_step = torch.maximum(largest_step, (new - U[:, k]).abs().max())
                U[:, k] = new
            # One host sync per sweep, not per coordinate.
            if largest_step.item() <= tol * max(U.abs().max().item(), 1e-30):
                break
    return U, sweep
