"""NMF concepts for non-negative features (e.g. post-ReLU or SAE activations).

Notation (``xlvlm.concepts``): Z (N, D) >= 0 features, U (N, K) >= 0 activations, V (K, D) >= 0
components.

    min_{U >= 0, V >= 0}  0.5 ||Z - U V||_F^2

solved by HALS (Cichocki & Phan 2009), exact cyclic coordinate steps on one factor's columns
(rows) at a time:

    U[:, k] <- max(0, U[:, k] + ((Z V^T)[:, k] - (U V V^T)[:, k]) / (V V^T)[k, k])
    V[k]    <- max(0, V[k]    + ((U^T Z)[k]    - (U^T U V)[k])    / (U^T U)[k, k])

after each V sweep its rows are rescaled to unit norm (U takes the scale). Start: the
clamped k-means centroids and their non-negative codes. Stops on relative decrease of the
objective under ``tol`` or ``max_iter``; training activations are the ``transform`` codes.
"""

from __future__ import annotations

import torch

from xlvlm.concepts.solvers.common import flush_denormals, until_converged
from xlvlm.concepts.solvers.kmeans import initial_centroids
from xlvlm.concepts.solvers.nnls import nonneg_codes
from xlvlm.concepts._validate import InputError


def update_components(Z: torch.Tensor, U: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """One HALS sweep on V (K, D) >= 0 for Z (N, D), U (N, K) -> new V, unit rows where non-zero."""
    G = U.T @ U
    C = U.T @ Z
    V = V.clone()
    for k in range(V.shape[0]):
        V[k] = (V[k] + (C[k] - G[k] @ V) / G[k, k].clamp_min(1e-12)).clamp_min(0)
    return V


def fit(
    Z: torch.Tensor, n_concepts: int, generator: torch.Generator, max_iter: int, tol: float, kmeans_iter: int,
    init_rows: int, init_runs: int,
) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
    """NMF of Z (N, D) >= 0 -> (V (K, D) >= 0, U (N, K) >= 0, state, info)."""
    if float(Z.min()) < 0:
        raise InputError(
            f"Negative values in data passed to method 'nmf', which needs non-negative features: X has "
            f"{int((Z < 0).sum())} negative entries (min {float(Z.min()):.4g}); use method='snmf', which allows "
            "signed features"
        )
    V = initial_centroids(Z, n_concepts, generator, kmeans_iter, init_rows, init_runs).clamp_min(0)
    current = {"U": None, "V": V / V.norm(dim=1, keepdim=True).clamp_min(1e-12)}

    def iteration() -> float:
        U, _ = nonneg_codes(Z, current["V"], init=current["U"], max_iter=1)
        V = update_components(Z, U, current["V"])
        norms = V.norm(dim=1).clamp_min(1e-12)
        current["V"], current["U"] = V / norms.unsqueeze(1), U * norms
        return 0.5 * float(torch.linalg.vector_norm(Z - current["U"] @ current["V"], dtype=torch.float64)) ** 2

    with flush_denormals():
        info = until_converged(iteration, max_iter, tol)
    return current["V"], encode(Z, current["V"], {}, {}), {}, info


def encode(Z: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """Z (N, D) -> non-negative least-squares codes (N, K) for the fixed components."""
    return nonneg_codes(Z, components)[0]


def decode(U: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """U (N, K) -> U V (N, D)."""
    return U @ components

