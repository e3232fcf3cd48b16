"""Sparse non-negative dictionary learning: the objective of scikit-learn's
``DictionaryLearning(positive_code=True)``, which the CoX-LMM research code used, in torch.

Notation (``xlvlm.concepts``): Z (N, D) features, U (N, K) codes >= 0, V (K, D) dictionary
atoms (rows).

    min_{U >= 0, V}  0.5 ||Z - U V||_F^2 + alpha * sum(U)    subject to ||V_k||_2 <= 1

``alpha`` is absolute, exactly as in scikit-learn (default 1.0), so a run here and one there
optimise the same function. (At an optimum with alpha > 0 every used atom has norm 1:
shrinking an atom would need larger, costlier codes.) Alternating minimisation, as sklearn:

    codes:  U <- argmin_{U >= 0} 0.5 ||Z - U V||^2 + alpha sum(U)
            (non-negative lasso, cyclic coordinate descent, warm-started; ``nnls``)
    atoms:  G = U^T U (K, K),  C = U^T Z (K, D); for k in 1..K (block coordinate descent,
            Mairal et al. 2010):
            V_k <- V_k + (C_k - G_k V) / G_kk;   V_k <- V_k / max(1, ||V_k||)
            an atom no code uses (G_kk ~ 0) is restarted on a random sample, as sklearn does.

Start: atoms = unit-norm k-means centroids (sklearn starts from an SVD, which can hold
negative mixtures that non-negative codes cannot use). Stops when the objective's relative
decrease falls under ``tol`` or after ``max_iter`` iterations; the returned activations are
the codes ``transform`` computes for the final atoms.
"""

from __future__ import annotations

import torch

from xlvlm.concepts.solvers.common import flush_denormals, until_converged
from xlvlm.concepts.solvers.kmeans import initial_centroids
from xlvlm.concepts.solvers.nnls import nonneg_codes


def update_atoms(Z: torch.Tensor, U: torch.Tensor, V: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One block-coordinate sweep over the atoms: Z (N, D), U (N, K), V (K, D) -> new V (K, D)."""
    G = U.T @ U
    C = U.T @ Z
    V = V.clone()
    for k in range(V.shape[0]):
        if G[k, k] <= 1e-10 * max(float(G.diagonal().max()), 1e-30):
            row = int(torch.randint(Z.shape[0], (1,), generator=generator, device=Z.device))
            V[k] = Z[row] / Z[row].norm().clamp_min(1e-12)
            continue
        V[k] = V[k] + (C[k] - G[k] @ V) / G[k, k]
        V[k] = V[k] / V[k].norm().clamp_min(1.0)
    return V


def objective(Z: torch.Tensor, U: torch.Tensor, V: torch.Tensor, alpha: float) -> float:
    """0.5 ||Z - U V||^2 + alpha sum(U), accumulated in float64.

    From the residual itself, not from Gram terms: ||Z||^2 - 2 <U, Z V^T> + ... cancels
    to a relative error of ~1e-5 in float32, coarser than the stopping tolerance.
    """
    residual = torch.linalg.vector_norm(Z - U @ V, dtype=torch.float64)
    return 0.5 * float(residual) ** 2 + alpha * float(U.sum(dtype=torch.float64))


# params: the solver's inner call from its estimator, which owns these hyperparameters
def fit(
    Z: torch.Tensor, n_concepts: int, generator: torch.Generator, alpha: float, max_iter: int, tol: float,
    code_iter: int, kmeans_iter: int, init_rows: int, init_runs: int,
) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
    """Sparse non-negative dictionary learning of Z (N, D) -> (V (K, D), U (N, K), state, info)."""
    centroids = initial_centroids(Z, n_concepts, generator, kmeans_iter, init_rows, init_runs)
    current = {"U": None, "V": centroids / centroids.norm(dim=1, keepdim=True).clamp_min(1e-12)}

    def iteration() -> float:
        U, _ = nonneg_codes(Z, current["V"], l1=alpha, init=current["U"], max_iter=code_iter)
        current["U"], current["V"] = U, update_atoms(Z, U, current["V"], generator)
        return objective(Z, U, current["V"], alpha)

    with flush_denormals():
        info = until_converged(iteration, max_iter, tol)
    V = current["V"]
    U = encode(Z, V, {}, {"alpha": alpha, "code_iter": code_iter})
    return V, U, {}, {**info, "objective": objective(Z, U, V, alpha)}


def encode(Z: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """Z (N, D) -> non-negative lasso codes (N, K) for the fixed atoms."""
    return nonneg_codes(Z, components, l1=options["alpha"], max_iter=options["code_iter"])[0]


def decode(U: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """U (N, K) -> U V (N, D)."""
    return U @ components

