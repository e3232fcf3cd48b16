"""The "simple" baseline: the K largest-norm samples are the concepts.

Notation (``xlvlm.concepts``): Z (N, D) features, V (K, D) components, U (N, K) codes;
i_1..i_K the rows of largest norm.

``activation="projection"`` (default, xlvlm):

    V_k = Z_{i_k} / ||Z_{i_k}||   (unit rows),   U = Z V^T  (projections)

  Projections on non-orthogonal directions are not coordinates, so the decoder is the least-
  squares reconstruction from them: Z_hat = U (V V^T)^+ V, the orthogonal projection of Z onto
  the span of V.

``activation="distance"`` (the CoX-LMM research code's):

    V_k = Z_{i_k}   (raw rows),   U[n, k] = 1 / (1 + ||Z_n - V_k||)

  i.e. k-means' encoder with the chosen rows as centroids, and k-means' decoder (the row of
  each code's most active concept).
"""

from __future__ import annotations

import torch

from xlvlm.concepts.registry import SIMPLE_ACTIVATIONS as ACTIVATIONS
from xlvlm.concepts.solvers import kmeans
from xlvlm.errors import XlvlmError


def _check(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise XlvlmError(f"unknown activation {activation!r} for method 'simple': use one of {', '.join(ACTIVATIONS)}")


def fit(
    Z: torch.Tensor, n_concepts: int, generator: torch.Generator, activation: str = "projection"
) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
    """Z (N, D) -> (the top-norm samples V (K, D): unit rows, or raw for "distance"; codes U
    (N, K); state; info). The generator is unused: the choice is deterministic."""
    _check(activation)
    norms = Z.norm(dim=1)
    # Stable sort: ties keep sample order, so the choice is deterministic.
    order = torch.sort(norms, descending=True, stable=True).indices[:n_concepts]
    info = {"sample_indices": order.tolist()}
    if activation == "distance":
        V = Z[order].clone()
        return V, kmeans.encode(Z, V, {}, {}), {}, info
    V = Z[order] / norms[order].clamp_min(1e-12).unsqueeze(1)
    decoder = torch.linalg.pinv((V @ V.T).double()).to(V.dtype) @ V
    state = {"decoder": decoder}
    return V, encode(Z, V, state, {}), state, info


def encode(Z: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """Z (N, D) -> Z V^T, or 1 / (1 + ||Z_n - V_k||) for "distance" (N, K)."""
    if options.get("activation", "projection") == "distance":
        return kmeans.encode(Z, components, state, options)
    return Z @ components.T


def decode(U: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """U (N, K) -> U (V V^T)^+ V, or the most active concept's row for "distance" (N, D)."""
    if options.get("activation", "projection") == "distance":
        return kmeans.decode(U, components, state, options)
    return U @ state["decoder"]

