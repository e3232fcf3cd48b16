"""PCA concepts: the top-K principal directions.

Notation (``xlvlm.concepts``): Z (N, D) features, m (D,) their mean, V (K, D) orthonormal
principal directions, U (N, K) activations.

    V = top-K right singular vectors of (Z - m),   U = (Z - m) V^T,   Z ~= U V + m

Small problems (min(N, D) <= 2000) take an exact SVD; larger ones a seeded randomized range
finder (Halko et al. 2011: K + 10 probes, ``power_iter`` power iterations with QR
re-orthonormalisation), which costs O(N D K) instead of O(N D min(N, D)). Signs are fixed so
that each direction's largest-magnitude entry is positive (SVD signs are arbitrary).
"""

from __future__ import annotations

import torch

from xlvlm.errors import XlvlmError

_EXACT_UP_TO = 2000


def principal_directions(Zc: torch.Tensor, k: int, generator: torch.Generator, power_iter: int) -> torch.Tensor:
    """Top-k right singular vectors of centred Zc (N, D) -> (k, D), orthonormal rows."""
    if min(Zc.shape) <= _EXACT_UP_TO:
        return torch.linalg.svd(Zc, full_matrices=False).Vh[:k]
    probes = torch.randn(Zc.shape[1], k + 10, generator=generator, device=Zc.device, dtype=Zc.dtype)
    Q = torch.linalg.qr(Zc @ probes).Q  # (N, k + 10): an orthonormal basis of the range
    for _ in range(power_iter):
        Q = torch.linalg.qr(Zc @ torch.linalg.qr(Zc.T @ Q).Q).Q
    return torch.linalg.svd(Q.T @ Zc, full_matrices=False).Vh[:k]


def fix_signs(V: torch.Tensor) -> torch.Tensor:
    """Flip rows of V (K, D) so that each row's largest-magnitude entry is positive."""
    pivot = V.gather(1, V.abs().argmax(1, keepdim=True))
    return V * torch.where(pivot < 0, -1.0, 1.0).to(V.dtype)


def fit(
    Z: torch.Tensor, n_concepts: int, generator: torch.Generator, power_iter: int
) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
    """Z (N, D) -> (principal directions V (K, D), projections of the centred rows (N, K), state, info)."""
    if n_concepts > min(Z.shape):
        raise XlvlmError(
            f"method 'pca' gives at most min(N, D) = {min(Z.shape)} components, asked for {n_concepts}; "
            "ask for fewer concepts or use an overcomplete method such as snmf"
        )
    mean = Z.mean(0)
    Zc = Z - mean
    V = fix_signs(principal_directions(Zc, n_concepts, generator, power_iter))
    variance = (Zc @ V.T).square().sum(0) / max(Z.shape[0] - 1, 1)
    total = Zc.square().sum() / max(Z.shape[0] - 1, 1)
    info = {"explained_variance_ratio": (variance / total.clamp_min(1e-30)).tolist()}
    state = {"mean": mean}
    return V, encode(Z, V, state, {}), state, info


def encode(Z: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """Z (N, D) -> (Z - m) V^T (N, K)."""
    return (Z - state["mean"]) @ components.T


def decode(U: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """U (N, K) -> U V + m (N, D)."""
    return U @ components + state["mean"]

