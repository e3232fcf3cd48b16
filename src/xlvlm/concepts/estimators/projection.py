"""Directions that activations project on: principal components, the largest-norm samples."""

from __future__ import annotations

from xlvlm.concepts.estimators.base import ConceptEstimator
from xlvlm.concepts.solvers import pca, simple


class PCA(ConceptEstimator):
    """The top-K principal directions; activations are projections (``solvers.pca``)."""

    summary, solver = "top-K principal directions; activations = projections", pca

    def __init__(self, n_concepts: int = 20, power_iter: int = 7, seed: int = 0, device: str | None = None,
                 n_components: int | None = None, random_state=None):
        self.n_concepts, self.power_iter, self.seed, self.device = n_concepts, power_iter, seed, device
        self.n_components, self.random_state = n_components, random_state


class Simple(ConceptEstimator):
    """The K largest-norm samples as directions (``solvers.simple``); activations are
    projections on the unit rows, or 1/(1 + distance) to the raw rows with
    ``activation="distance"`` (the research code's)."""

    solver = simple
    summary = ("the K largest-norm samples as directions; activations = projections, or "
               "1/(1 + distance) to the raw rows with activation='distance' (the research code's)")

    def __init__(self, n_concepts: int = 20, activation: str = "projection", seed: int = 0,
                 device: str | None = None, n_components: int | None = None, random_state=None):
        self.n_concepts, self.activation, self.seed, self.device = n_concepts, activation, seed, device
        self.n_components, self.random_state = n_components, random_state

