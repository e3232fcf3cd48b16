"""Clustering: k-means (Lloyd) and mini-batch k-means; both stream through ``partial_fit``."""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from xlvlm.concepts._validate import InputError
from xlvlm.concepts.estimators.online import OnlineEstimator
from xlvlm.concepts.solvers import kmeans


class _KMeansUpdates(OnlineEstimator):
    """k-means' encoder (activations 1 / (1 + distance)) and its minibatch updates (Sculley):
    ``partial_fit`` starts from Lloyd on the first call's rows, and every call takes one step."""

    solver = kmeans
    run_state = ("_counts", "_given", "_last")

    def _start(self, Z: torch.Tensor) -> None:
        """Centroids from the best of n_init k-means++/Lloyd runs on Z's rows."""
        C = kmeans.lloyd(Z, self.concepts_count(), self._generator(Z.device), self.max_iter, self.n_init)[0]
        self._learned(C, {}, {"n_iter": 0})
        self._resume()

    def _resume(self) -> None:
        self._counts = torch.zeros(self.components_.shape[0], dtype=torch.float64, device=self.components_.device)
        self._given = torch.zeros_like(self._counts)
        self.n_iter_ = self.n_iter_ or 0

    def _update(self, Z: torch.Tensor) -> None:
        self.components_, given = kmeans.minibatch_step(Z, self.components_, self._counts)
        self._given += given
        self._last = Z

    def end_pass(self) -> None:
        """Move each centroid that got no row this pass onto the farthest row of its last minibatch."""
        if not hasattr(self, "_last"):
            raise InputError("end_pass() without a minibatch in the pass; call partial_fit(Z_b) first")
        kmeans.revive_dead(self.components_, self._counts, self._given, self._last)
        del self._last  # not held while the next pass reads its first minibatch (memory bound)
        self._given.zero_()
        self.n_iter_ += 1
        self.info_ = {**self.info_, "n_iter": self.n_iter_}


class KMeans(_KMeansUpdates):
    """k-means++ then Lloyd, best of ``n_init`` starts (``solvers.kmeans``); ``partial_fit``
    does mini-batch steps (see MiniBatchKMeans)."""

    summary = "k-means++ then Lloyd; activations 1/(1 + distance to each centroid)"

    def __init__(self, n_concepts: int = 20, max_iter: int = 100, n_init: int = 3, seed: int = 0,
                 device: str | None = None, n_components: int | None = None, random_state=None):
        self.n_concepts, self.max_iter, self.n_init, self.seed, self.device = n_concepts, max_iter, n_init, seed, device
        self.n_components, self.random_state = n_components, random_state


class MiniBatchKMeans(_KMeansUpdates):
    """Mini-batch k-means (Sculley 2010): the best of ``n_init`` k-means++/Lloyd runs (at most
    ``max_iter`` iterations) on ``init_rows`` sampled rows, then ``epochs`` passes of minibatch
    steps over all rows in a new random order each (``solvers.kmeans``)."""

    summary = "mini-batch k-means (Sculley): Lloyd on a sample, then minibatch passes"
    stream_ignores = ("batch_size",)  # a store's minibatches are batch_rows rows

    # params: a scikit-learn estimator's hyperparameters are its constructor's keywords (get_params reads them)
    def __init__(self, n_concepts: int = 20, batch_size: int = 1024, epochs: int = 3, init_rows: int = 4096,
                 n_init: int = 3, max_iter: int = 100, seed: int = 0, device: str | None = None,
                 n_components: int | None = None, random_state=None):
        self.n_concepts, self.batch_size, self.epochs, self.init_rows = n_concepts, batch_size, epochs, init_rows
        self.n_init, self.max_iter, self.seed, self.device = n_init, max_iter, seed, device
        self.n_components, self.random_state = n_components, random_state

    def _fit(self, Z: torch.Tensor, generator: torch.Generator):
        n = Z.shape[0]
        start = torch.randperm(n, generator=generator, device=Z.device)[:max(self.init_rows, self.concepts_count())]
        self._start_on(Z[start.sort().values])
        batch = max(1, int(self.batch_size))

        def read_pass():
            order = torch.randperm(n, generator=generator, device=Z.device)
            return (Z[order[first:first + batch]] for first in range(0, n, batch))

        self.fit_passes(read_pass)
        closest = kmeans.squared_distances(Z, self.components_).min(1).values
        info = {"n_iter": self.n_iter_, "inertia": float(closest.double().sum())}
        return self.components_, self.solver.encode(Z, self.components_, {}, {}), {}, info

    def fit_passes(self, read_pass: Callable[[], Iterable[torch.Tensor]]) -> "MiniBatchKMeans":
        """``epochs`` passes over ``read_pass()``'s minibatches (after a first partial_fit)."""
        self._require_start()
        with torch.no_grad():
            for _ in range(self.epochs):
                self._one_pass(read_pass)
        return self
