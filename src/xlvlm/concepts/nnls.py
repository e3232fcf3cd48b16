"""Non-negative (optionally L1-penalised) least-squares codes with the dictionary fixed.

Notation: Z (N, D) features, V (K, D) components held fixed, U (N, K) codes to find.

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

import contextlib

import torch


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


def least_squares_codes(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Unconstrained codes argmin_U ||Z - U V|| from A = Z V^T (N, K), B = V V^T (K, K) -> (N, K).

    Solved through the (K, K) normal equations in float64 (K is small; squaring the condition
    number in float32 would lose digits), with a tiny ridge so dead components do not break it.
    """
    B = B.double()
    ridge = 1e-10 * B.diagonal().mean().clamp_min(1e-30)
    B = B + ridge * torch.eye(B.shape[0], dtype=B.dtype, device=B.device)
    return torch.linalg.solve(B, A.double().T).T.to(A.dtype)


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
