"""The "simple" baseline: the K largest-norm samples, as directions, are the concepts.

Notation: Z (N, D) features, V (K, D) the chosen samples scaled to unit norm, U (N, K).

    V_k = Z_{i_k} / ||Z_{i_k}||  for the K rows of largest norm,   U = Z V^T  (projections)

Projections on non-orthogonal directions are not coordinates, so the decoder is the least-
squares reconstruction from them: Z_hat = U (V V^T)^+ V, the orthogonal projection of Z onto
the span of V.
"""

from __future__ import annotations

import torch

from xlvlm.concepts._method import Fitted, Method


def fit(Z: torch.Tensor, n_concepts: int, generator: torch.Generator) -> Fitted:
    """Z (N, D) -> unit-norm top-norm samples (K, D) and projections (N, K)."""
    norms = Z.norm(dim=1)
    # Stable sort: ties keep sample order, so the choice is deterministic.
    order = torch.sort(norms, descending=True, stable=True).indices[:n_concepts]
    V = Z[order] / norms[order].clamp_min(1e-12).unsqueeze(1)
    decoder = torch.linalg.pinv((V @ V.T).double()).to(V.dtype) @ V
    state = {"decoder": decoder}
    return Fitted(V, encode(Z, V, state, {}), state=state, info={"sample_indices": order.tolist()})


def encode(Z: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """Z (N, D) -> Z V^T (N, K)."""
    return Z @ components.T


def decode(U: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """U (N, K) -> U (V V^T)^+ V (N, D)."""
    return U @ state["decoder"]


METHOD = Method("simple", fit, encode, decode, {}, "the K largest-norm samples as directions; activations = projections")
