"""Semi-NMF concepts (Ding, Li & Jordan 2010, "Convex and semi-nonnegative matrix
factorizations"), as CoX-LMM uses them: non-negative activations, free-signed components.

Notation (Overcomplete style)::

    Z  (N, D)  features, one sample per row, any sign
    U  (N, K)  activations (A in Overcomplete), U >= 0
    V  (K, D)  components / concept dictionary (D in Overcomplete), any sign, rows unit norm

Objective, with an optional L1 penalty that makes the codes sparse::

    min_{U >= 0, V}  0.5 ||Z - U V||_F^2 + lambda * sum(U),    lambda = l1 * s

where s = sqrt(mean_n ||Z_n||^2) is the RMS row norm of the training features: with unit-norm
components a code is in the units of ||Z_n||, so ``l1=0.05`` shrinks every code by about 5% of
a typical sample's norm, at any layer and any model width.

Alternating updates (the rules of Ding et al., written for Z ~= U V rather than X ~= F G^T):

    V <- argmin_V ||Z - U V||^2 = (U^T U)^{-1} U^T Z              (least squares)
    V_k <- V_k / ||V_k||,  U[:, k] <- U[:, k] * ||V_k||            (same product U V; gives
                                                                    the L1 term a fixed scale)
    A = Z V^T (N, K),  B = V V^T (K, K),  X+ = (|X| + X)/2,  X- = (|X| - X)/2
    U <- U * sqrt( (A+ + U B-) / (A- + U B+ + lambda) )           (multiplicative, keeps U >= 0)

The multiplicative rule never increases the objective for fixed V (Ding et al., Theorem 1; the
l1 term adds a positive constant to the gradient's positive part). Since A and B do not
change while V is fixed, ``inner`` U-updates per V-update cost only O(N K^2) each.
Initialisation: V = the k-means centroids (``kmeans.initial_centroids``: the best of
``init_runs`` seeded k-means++ runs on at most ``init_rows`` sampled rows), U = their exact
non-negative codes plus ``init_offset`` times each row's largest code.
(Ding et al. start from cluster indicators
+ 0.2. But U V is unchanged by U -> U M, V -> M^-1 V for any M with U M >= 0, a flat valley
of the objective, and the +0.2 offset is such an M = I + 0.2 11^T: the components it gives
are the centroids minus 0.2/(1 + 0.2 K) times their sum, and the updates barely move them
back. On planted data this cost 0.02 of matched cosine; a small offset still lets every code
grow, since a multiplicative update cannot revive an exact zero.) The fit stops when
the objective's relative decrease falls under ``tol`` or after ``max_iter`` outer iterations;
the returned activations are then the exact non-negative codes for the final V
(``xlvlm.concepts.nnls``), which is what ``transform`` computes for new rows.
"""

from __future__ import annotations

import torch

from xlvlm.concepts._method import Fitted, Method
from xlvlm.concepts.kmeans import initial_centroids
from xlvlm.concepts.nnls import flush_denormals, nonneg_codes

_EPS = 1e-12


def least_squares_components(Z: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """V = argmin ||Z - U V||^2 for Z (N, D), U (N, K) -> (K, D).

    The (K, K) normal equations are solved in float64 with a tiny ridge, so an unused
    concept (a zero column of U) gives a zero row instead of a singular matrix.
    """
    G = (U.T @ U).double()
    ridge = 1e-10 * G.diagonal().mean().clamp_min(1e-30)
    G = G + ridge * torch.eye(G.shape[0], dtype=G.dtype, device=G.device)
    return torch.linalg.solve(G, (U.T @ Z).double()).to(Z.dtype)


def normalise_rows(U: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rescale V (K, D) to unit rows and U (N, K) inversely; U V is unchanged."""
    norms = V.norm(dim=1).clamp_min(1e-12)
    return U * norms, V / norms.unsqueeze(1)


def multiplicative_update(U: torch.Tensor, A: torch.Tensor, B: torch.Tensor, l1: float) -> torch.Tensor:
    """One Ding et al. step: U (N, K), A = Z V^T (N, K), B = V V^T (K, K) -> new U (N, K).

    U * sqrt((A+ + U B-) / (A- + U B+ + l1)); the epsilon keeps an all-zero row at zero.
    """
    B_pos, B_neg = B.clamp_min(0), (-B).clamp_min(0)
    A_pos, A_neg = A.clamp_min(0), (-A).clamp_min(0)
    return U * torch.sqrt((A_pos + U @ B_neg) / (A_neg + U @ B_pos + (l1 + _EPS)))


def objective(sq_norm_Z: float, U: torch.Tensor, A: torch.Tensor, B: torch.Tensor, l1: float) -> float:
    """0.5 ||Z - U V||^2 + l1 sum(U) from the Gram terms, in float64, without forming U V.

    ||Z - U V||^2 = ||Z||^2 - 2 <U, Z V^T> + <U^T U, V V^T>. The float32 Gram terms make this
    cancellation accurate to ~1e-5 of the objective (measured on planted data), which is why
    the default stopping tolerance is 1e-4; the final codes are solved exactly anyway.
    """
    U64 = U.double()
    fit_term = sq_norm_Z - 2.0 * float((U64 * A.double()).sum()) + float(((U64.T @ U64) * B.double()).sum())
    return 0.5 * max(fit_term, 0.0) + l1 * float(U64.sum())


def fit(
    Z: torch.Tensor,
    n_concepts: int,
    generator: torch.Generator,
    l1: float,
    max_iter: int,
    tol: float,
    inner: int,
    init_offset: float,
    kmeans_iter: int,
    init_rows: int,
    init_runs: int,
) -> Fitted:
    """Semi-NMF of Z (N, D) into U (N, K) >= 0 and V (K, D); see the module docstring."""
    sq_norm_Z = float(torch.linalg.vector_norm(Z, dtype=torch.float64)) ** 2
    scale = torch.tensor((sq_norm_Z / Z.shape[0]) ** 0.5, dtype=Z.dtype, device=Z.device)
    penalty = l1 * float(scale)
    centroids = initial_centroids(Z, n_concepts, generator, kmeans_iter, init_rows, init_runs)
    _, V = normalise_rows(torch.ones(1, n_concepts, dtype=Z.dtype, device=Z.device), centroids)
    U, _ = nonneg_codes(Z, V, l1=penalty)
    U = U + init_offset * U.max(1, keepdim=True).values.clamp_min(1e-12)
    history = []
    converged = False
    with flush_denormals():
        for iteration in range(1, max_iter + 1):
            U, V = normalise_rows(U, least_squares_components(Z, U))
            A, B = Z @ V.T, V @ V.T
            for _ in range(inner):
                U = multiplicative_update(U, A, B, penalty)
            # Where flushing is unsupported (some non-x86 CPUs), zero the underflowing codes.
            U = torch.where(U < 1e-30, torch.zeros_like(U), U)
            history.append(objective(sq_norm_Z, U, A, B, penalty))
            if len(history) > 1 and history[-2] - history[-1] <= tol * abs(history[-2]):
                converged = True
                break
    state = {"feature_scale": scale}
    U = encode(Z, V, state, {"l1": l1})
    info = {"n_iter": iteration, "converged": converged, "objective": history[-1], "l1_penalty": penalty}
    return Fitted(V, U, state=state, info=info)


def encode(Z: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """Z (N, D) -> non-negative codes (N, K) for the fixed components (exact NNLS + L1).

    The penalty is ``l1`` times the training features' RMS row norm (state["feature_scale"]).
    """
    return nonneg_codes(Z, components, l1=options["l1"] * float(state["feature_scale"]))[0]


def decode(U: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """U (N, K) -> U V (N, D)."""
    return U @ components


METHOD = Method(
    "snmf", fit, encode, decode,
    {
        "l1": 0.0, "max_iter": 500, "tol": 1e-4, "inner": 10, "init_offset": 0.05,
        "kmeans_iter": 50, "init_rows": 2048, "init_runs": 3,
    },
    "semi-NMF (Ding et al.): U >= 0, V free; least-squares V, multiplicative U",
)
