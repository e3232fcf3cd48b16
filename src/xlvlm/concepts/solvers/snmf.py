"""Semi-NMF concepts (Ding, Li & Jordan 2010, "Convex and semi-nonnegative matrix
factorizations"), as CoX-LMM uses them: non-negative activations, free-signed components.

Notation (``xlvlm.concepts``): Z (N, D) features of any sign, U (N, K) >= 0 activations,
V (K, D) components of any sign with unit-norm rows.

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

from xlvlm.concepts.solvers.common import flush_denormals, ridge_solve, until_converged
from xlvlm.concepts.solvers.kmeans import initial_centroids
from xlvlm.concepts.solvers.nnls import nonneg_codes

_EPS = 1e-12


def least_squares_components(Z: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """V = argmin ||Z - U V||^2 for Z (N, D), U (N, K) -> (K, D).

    The (K, K) normal equations go through ``common.ridge_solve``, so an unused concept (a
    zero column of U) gives a zero row instead of a singular matrix.
    """
    return ridge_solve(U.T @ U, U.T @ Z).to(Z.dtype)


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


# params: the solver's inner call from its estimator, which owns these hyperparameters
def fit(
    Z: torch.Tensor, n_concepts: int, generator: torch.Generator, l1: float, max_iter: int, tol: float, inner: int,
    init_offset: float, kmeans_iter: int, init_rows: int, init_runs: int,
) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
    """Semi-NMF of Z (N, D) -> (V (K, D), U (N, K) >= 0, state, info); see the module docstring."""
    sq_norm_Z = float(torch.linalg.vector_norm(Z, dtype=torch.float64)) ** 2
    scale = torch.tensor((sq_norm_Z / Z.shape[0]) ** 0.5, dtype=Z.dtype, device=Z.device)
    penalty = l1 * float(scale)
    V = start_components(Z, n_concepts, generator, kmeans_iter, init_rows, init_runs)
    U, _ = nonneg_codes(Z, V, l1=penalty)
    current = {"U": U + init_offset * U.max(1, keepdim=True).values.clamp_min(1e-12), "V": V}

    def iteration() -> float:
        U, V = normalise_rows(current["U"], least_squares_components(Z, current["U"]))
        A, B = Z @ V.T, V @ V.T
        for _ in range(inner):
            U = multiplicative_update(U, A, B, penalty)
        # Where flushing is unsupported (some non-x86 CPUs), zero the underflowing codes.
        current["U"], current["V"] = torch.where(U < 1e-30, torch.zeros_like(U), U), V
        return objective(sq_norm_Z, current["U"], A, B, penalty)

    with flush_denormals():
        info = until_converged(iteration, max_iter, tol)
    state = {"feature_scale": scale}
    V = current["V"]
    return V, encode(Z, V, state, {"l1": l1}), state, {**info, "l1_penalty": penalty}


def start_components(
    Z: torch.Tensor, k: int, generator: torch.Generator, kmeans_iter: int, init_rows: int, init_runs: int
) -> torch.Tensor:
    """The starting V (k, D): unit-norm k-means centroids of (a sample of) Z (N, D)."""
    centroids = initial_centroids(Z, k, generator, kmeans_iter, init_rows, init_runs)
    return normalise_rows(torch.ones(1, k, dtype=Z.dtype, device=Z.device), centroids)[1]


# ---- minibatches ------------------------------------------------------------------------------
# Both minibatch fits code a minibatch Z_b (B, D) exactly for the current V (non-negative L1
# codes; nnls, at most 100 sweeps, to 1e-4) and use the sums G = U_b^T U_b (K, K),
# H = U_b^T Z_b (K, D), in float64 across minibatches, through V <- normalise_rows(G^{-1} H)
# (= argmin_V ||Z - U V||^2 over the rows summed).
#
# Pass-based (``fit_passes``, a store larger than memory): V stays fixed during a pass, the sums
# run over the whole pass, and the step at its end is one exact outer iteration; the pass
# objective 0.5 (s2 - 2 <H, V> + <G, V V^T>) + lambda sum(U) comes from the same sums. (The
# in-memory fit carries U over and takes ``inner`` multiplicative steps; no U is kept here, and a
# few multiplicative steps from a cold start are not enough: on a planted test with l1 = 0.05,
# 10 steps made the objective rise at the second pass and ended 1.4% worse.)
#
# Online (``partial_fit``; Mairal, Bach, Ponce & Sapiro 2010, "Online learning for matrix
# factorization and sparse coding", with its minibatch weighting): every minibatch t updates
# running sums with a forgetting factor, then V at once,
#     G <- beta_t G + U_b^T U_b,   H <- beta_t H + U_b^T Z_b,   beta_t = (1 - 1/t)^rho
# so the codes of early minibatches, made for an early V, fade out; rho = ONLINE_FORGETTING.
# On planted data (3000 x 64, K = 8, 500-row minibatches) rho = 0, 1, 2, 4, 8 gave relative
# errors within 0.5% of each other, 4 and 8 the lowest after three passes.

STREAM_CODE_SWEEPS = 100
ONLINE_FORGETTING = 4.0


def pass_sums(k: int, d: int, device) -> dict:
    """Empty sums for one pass (or an online run): G (K, K), H (K, D) float64, and scalars."""
    return {"G": torch.zeros(k, k, dtype=torch.float64, device=device),
            "H": torch.zeros(k, d, dtype=torch.float64, device=device),
            "sq_norm": 0.0, "code_sum": 0.0, "rows": 0, "minibatches": 0}


def minibatch_codes(Z: torch.Tensor, V: torch.Tensor, penalty: float) -> torch.Tensor:
    """The codes U (B, K) >= 0 of minibatch Z (B, D) for V (K, D), as both minibatch fits use them."""
    return nonneg_codes(Z, V, l1=penalty, max_iter=STREAM_CODE_SWEEPS, tol=1e-4)[0]


def add_to_pass(sums: dict, Z: torch.Tensor, U: torch.Tensor, forgetting: float = 0.0) -> None:
    """Add minibatch Z (B, D) and its codes U (B, K) to the sums, in place; with ``forgetting``
    rho > 0 the earlier sums are first weighted by (1 - 1/t)^rho (t: this minibatch's number)."""
    sums["minibatches"] += 1
    if forgetting:
        beta = (1.0 - 1.0 / sums["minibatches"]) ** forgetting
        sums["G"] *= beta
        sums["H"] *= beta
    # float32 products per minibatch, summed in float64 across minibatches
    sums["G"] += (U.T @ U).double()
    sums["H"] += (U.T @ Z).double()
    # row norms in float32, summed in float64: vector_norm(Z, dtype=float64) would copy Z to float64
    sums["sq_norm"] += float(torch.linalg.vector_norm(Z, dim=1).double().square().sum())
    sums["code_sum"] += float(U.double().sum())
    sums["rows"] += Z.shape[0]


def components_from_sums(sums: dict, V: torch.Tensor) -> torch.Tensor:
    """V' = normalise_rows(G^{-1} H) (K, D); a concept no summed code used keeps its row of V."""
    V_new = ridge_solve(sums["G"], sums["H"]).to(V.dtype)
    used = sums["G"].diagonal() > 0
    V_new = torch.where(used.unsqueeze(1), V_new, V)
    return normalise_rows(torch.ones(1, V.shape[0], dtype=V.dtype, device=V.device), V_new)[1]


def finish_pass(sums: dict, V: torch.Tensor, penalty: float) -> tuple[torch.Tensor, float]:
    """From one pass's sums and the V (K, D) it was coded with -> (new V (K, D), pass objective)."""
    V64 = V.double()
    fit_term = sums["sq_norm"] - 2.0 * float((sums["H"] * V64).sum()) + float((sums["G"] * (V64 @ V64.T)).sum())
    objective_value = 0.5 * max(fit_term, 0.0) + penalty * sums["code_sum"]
    return components_from_sums(sums, V), objective_value


def encode(Z: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """Z (N, D) -> non-negative codes (N, K) for the fixed components (exact NNLS + L1).

    The penalty is ``l1`` times the training features' RMS row norm (state["feature_scale"]).
    """
    return nonneg_codes(Z, components, l1=options["l1"] * float(state["feature_scale"]))[0]


def decode(U: torch.Tensor, components: torch.Tensor, state: dict, options: dict) -> torch.Tensor:
    """U (N, K) -> U V (N, D)."""
    return U @ components

