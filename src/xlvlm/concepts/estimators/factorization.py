"""Matrix factorisations Z ~= A D: semi-NMF (streams), sparse non-negative dictionary learning,
NMF."""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from xlvlm.concepts.estimators.base import ConceptEstimator
from xlvlm.concepts.solvers import nmf, nndl, snmf
from xlvlm.concepts.solvers.common import until_converged
from xlvlm.errors import XlvlmError


class SemiNMF(ConceptEstimator):
    """Semi-NMF (Ding et al.): A >= 0, D free; least-squares D, multiplicative A
    (``solvers.snmf``). Streams: ``partial_fit`` takes exact codes per minibatch and one
    least-squares step for D per pass (each iteration of ``max_iter``/``tol`` is a pass)."""

    name, summary, solver = "snmf", "semi-NMF (Ding et al.): U >= 0, V free; least-squares V, multiplicative U", snmf
    stream_ignores = ("inner", "init_offset")  # multiplicative steps: in memory only

    # params: an estimator's hyperparameters are constructor keywords (sklearn's get_params)
    def __init__(self, n_concepts: int = 20, l1: float = 0.0, max_iter: int = 500, tol: float = 1e-4,
                 inner: int = 10, init_offset: float = 0.05, kmeans_iter: int = 50, init_rows: int = 2048,
                 init_runs: int = 3, seed: int = 0, device: str | None = None):
        self.n_concepts, self.l1, self.max_iter, self.tol = n_concepts, l1, max_iter, tol
        self.inner, self.init_offset, self.kmeans_iter = inner, init_offset, kmeans_iter
        self.init_rows, self.init_runs, self.seed, self.device = init_rows, init_runs, seed, device

    def _start(self, Z: torch.Tensor) -> None:
        """D from k-means on Z's rows; the penalty's scale from them too (every end_pass() sets
        it from the whole pass)."""
        V = snmf.start_components(Z, self.n_concepts, self._generator(Z.device), self.kmeans_iter, self.init_rows,
                                  self.init_runs)
        scale = torch.linalg.vector_norm(Z, dim=1).square().mean().sqrt()
        self._learned(V, {"feature_scale": scale}, {"n_iter": 0})
        self._pass = snmf.pass_sums(self.n_concepts, Z.shape[1], Z.device)

    def _update(self, Z: torch.Tensor) -> None:
        snmf.add_to_pass(self._pass, Z, self.components_, self._penalty())

    def _penalty(self) -> float:
        return self.l1 * float(self.state_["feature_scale"])

    def end_pass(self) -> float:
        """Take the least-squares step for D from this pass's minibatches; returns the pass's
        objective 0.5 ||Z - A D||^2 + lambda sum(A) (for the D they were coded with)."""
        sums = getattr(self, "_pass", None)
        if not sums or not sums["rows"]:
            raise XlvlmError("end_pass() without a minibatch in the pass; call partial_fit(Z_b) first")
        penalty = self._penalty()
        V, objective = snmf.finish_pass(sums, self.components_, penalty)
        scale = torch.tensor((sums["sq_norm"] / sums["rows"]) ** 0.5, dtype=V.dtype, device=V.device)
        info = {"n_iter": self.n_iter_ + 1, "objective": objective, "l1_penalty": penalty}
        self._learned(V, {"feature_scale": scale}, info)
        self._pass = snmf.pass_sums(V.shape[0], V.shape[1], V.device)
        return objective

    def fit_passes(self, read_pass: Callable[[], Iterable[torch.Tensor]]) -> "SemiNMF":
        """Passes over ``read_pass()``'s minibatches until the objective's relative decrease is
        under ``tol`` or after ``max_iter`` passes (after a first partial_fit)."""
        info = until_converged(lambda: self._one_pass(read_pass), self.max_iter, self.tol)
        self.info_ = {**self.info_, **info}
        return self


class NNDL(ConceptEstimator):
    """Sparse non-negative dictionary learning, scikit-learn's DictionaryLearning(positive_code=True)
    objective (``solvers.nndl``)."""

    name, solver = "nndl", nndl
    summary = "sparse non-negative dictionary learning (sklearn DictionaryLearning(positive_code=True) objective)"

    # params: an estimator's hyperparameters are constructor keywords (sklearn's get_params)
    def __init__(self, n_concepts: int = 20, alpha: float = 1.0, max_iter: int = 200, tol: float = 1e-6,
                 code_iter: int = 1000, kmeans_iter: int = 50, init_rows: int = 2048, init_runs: int = 3,
                 seed: int = 0, device: str | None = None):
        self.n_concepts, self.alpha, self.max_iter, self.tol, self.code_iter = n_concepts, alpha, max_iter, tol, code_iter
        self.kmeans_iter, self.init_rows, self.init_runs = kmeans_iter, init_rows, init_runs
        self.seed, self.device = seed, device


class NMF(ConceptEstimator):
    """NMF by HALS, for non-negative features only (``solvers.nmf``)."""

    name, summary, solver = "nmf", "NMF by HALS, for non-negative features only", nmf

    def __init__(self, n_concepts: int = 20, max_iter: int = 500, tol: float = 1e-5, kmeans_iter: int = 50,
                 init_rows: int = 2048, init_runs: int = 3, seed: int = 0, device: str | None = None):
        self.n_concepts, self.max_iter, self.tol, self.kmeans_iter = n_concepts, max_iter, tol, kmeans_iter
        self.init_rows, self.init_runs, self.seed, self.device = init_rows, init_runs, seed, device
