"""Matrix factorisations Z ~= U V: semi-NMF (online and streaming), sparse non-negative
dictionary learning, NMF."""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from xlvlm.concepts._validate import InputError
from xlvlm.concepts.estimators.base import ConceptEstimator
from xlvlm.concepts.estimators.online import OnlineEstimator
from xlvlm.concepts.solvers import nmf, nndl, snmf
from xlvlm.concepts.solvers.common import until_converged


class SemiNMF(OnlineEstimator):
    """Semi-NMF (Ding et al.): U >= 0, V free; least-squares V, multiplicative U
    (``solvers.snmf``). ``partial_fit``: online (Mairal et al.), each minibatch's exact codes
    update running sums with a forgetting factor and V at once. ``fit_passes``: exact passes,
    one least-squares step for V per pass (each iteration of ``max_iter``/``tol`` is a pass)."""

    summary, solver = "semi-NMF (Ding et al.): U >= 0, V free; least-squares V, multiplicative U", snmf
    stream_ignores = ("inner", "init_offset")  # multiplicative steps: in memory only
    run_state = ("_pass", "_online")

    # params: an estimator's hyperparameters are constructor keywords (sklearn's get_params)
    def __init__(self, n_concepts: int = 20, l1: float = 0.0, max_iter: int = 500, tol: float = 1e-4,
                 inner: int = 10, init_offset: float = 0.05, kmeans_iter: int = 50, init_rows: int = 2048,
                 init_runs: int = 3, seed: int = 0, device: str | None = None, n_components: int | None = None,
                 random_state=None):
        self.n_concepts, self.l1, self.max_iter, self.tol = n_concepts, l1, max_iter, tol
        self.inner, self.init_offset, self.kmeans_iter = inner, init_offset, kmeans_iter
        self.init_rows, self.init_runs, self.seed, self.device = init_rows, init_runs, seed, device
        self.n_components, self.random_state = n_components, random_state

    def _start(self, Z: torch.Tensor) -> None:
        """V from k-means on Z's rows; the penalty's scale from them too (every end_pass() sets
        it from the whole pass)."""
        V = snmf.start_components(Z, self.concepts_count(), self._generator(Z.device), self.kmeans_iter,
                                  self.init_rows, self.init_runs)
        scale = torch.linalg.vector_norm(Z, dim=1).square().mean().sqrt()
        self._learned(V, {"feature_scale": scale}, {"n_iter": 0})
        self._resume()

    def _resume(self) -> None:
        self._pass = snmf.pass_sums(*self.components_.shape, self.components_.device)
        self._online = snmf.pass_sums(*self.components_.shape, self.components_.device)

    def _update(self, Z: torch.Tensor) -> None:
        """The online step: codes of Z (B, D), into the pass sums and the running sums; new V."""
        U = snmf.minibatch_codes(Z, self.components_, self._penalty())
        snmf.add_to_pass(self._pass, Z, U)
        snmf.add_to_pass(self._online, Z, U, forgetting=snmf.ONLINE_FORGETTING)
        self.components_ = snmf.components_from_sums(self._online, self.components_).contiguous()

    def _penalty(self) -> float:
        return self.l1 * float(self.state_["feature_scale"])

    def end_pass(self) -> float:
        """Take the least-squares step for V over this pass's minibatches (their codes as they
        were made); returns the pass's objective 0.5 ||Z - U V||^2 + lambda sum(U)."""
        sums = getattr(self, "_pass", None)
        if not sums or not sums["rows"]:
            raise InputError("end_pass() without a minibatch in the pass; call partial_fit(Z_b) first")
        penalty = self._penalty()
        V, objective = snmf.finish_pass(sums, self.components_, penalty)
        scale = torch.tensor((sums["sq_norm"] / sums["rows"]) ** 0.5, dtype=V.dtype, device=V.device)
        info = {"n_iter": self.n_iter_ + 1, "objective": objective, "l1_penalty": penalty}
        self._learned(V, {"feature_scale": scale}, info)
        self._pass = snmf.pass_sums(V.shape[0], V.shape[1], V.device)
        return objective

    def _exact_pass(self, read_pass: Callable[[], Iterable]) -> float:
        """One pass with V fixed: every minibatch's codes into the pass sums, then end_pass()."""
        self._pass = snmf.pass_sums(*self.components_.shape, self.components_.device)
        for Z in self._minibatches_of(read_pass):
            snmf.add_to_pass(self._pass, Z, snmf.minibatch_codes(Z, self.components_, self._penalty()))
        return self.end_pass()

    def fit_passes(self, read_pass: Callable[[], Iterable]) -> "SemiNMF":
        """Exact passes over ``read_pass()``'s minibatches, after a start (a first partial_fit),
        until the objective's relative decrease is under ``tol`` or after ``max_iter`` passes."""
        self._require_start()
        with torch.no_grad():
            info = until_converged(lambda: self._exact_pass(read_pass), self.max_iter, self.tol)
        self.info_ = {**self.info_, **info}
        return self


class NNDL(ConceptEstimator):
    """Sparse non-negative dictionary learning, scikit-learn's DictionaryLearning(positive_code=True)
    objective (``solvers.nndl``)."""

    solver = nndl
    summary = "sparse non-negative dictionary learning (sklearn DictionaryLearning(positive_code=True) objective)"

    # params: an estimator's hyperparameters are constructor keywords (sklearn's get_params)
    def __init__(self, n_concepts: int = 20, alpha: float = 1.0, max_iter: int = 200, tol: float = 1e-6,
                 code_iter: int = 1000, kmeans_iter: int = 50, init_rows: int = 2048, init_runs: int = 3,
                 seed: int = 0, device: str | None = None, n_components: int | None = None, random_state=None):
        self.n_concepts, self.alpha, self.max_iter, self.tol, self.code_iter = n_concepts, alpha, max_iter, tol, code_iter
        self.kmeans_iter, self.init_rows, self.init_runs = kmeans_iter, init_rows, init_runs
        self.seed, self.device, self.n_components, self.random_state = seed, device, n_components, random_state


class NMF(ConceptEstimator):
    """NMF by HALS, for non-negative features only (``solvers.nmf``)."""

    summary, solver = "NMF by HALS, for non-negative features only", nmf

    # params: a scikit-learn estimator's hyperparameters are its constructor's keywords (get_params reads them)
    def __init__(self, n_concepts: int = 20, max_iter: int = 500, tol: float = 1e-5, kmeans_iter: int = 50,
                 init_rows: int = 2048, init_runs: int = 3, seed: int = 0, device: str | None = None,
                 n_components: int | None = None, random_state=None):
        self.n_concepts, self.max_iter, self.tol, self.kmeans_iter = n_concepts, max_iter, tol, kmeans_iter
        self.init_rows, self.init_runs, self.seed, self.device = init_rows, init_runs, seed, device
        self.n_components, self.random_state = n_components, random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags
