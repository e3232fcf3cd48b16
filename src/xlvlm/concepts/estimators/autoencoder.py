"""A sparse autoencoder: TopK; its decoder rows are the concepts."""

from __future__ import annotations

from xlvlm.concepts.estimators.base import ConceptEstimator
from xlvlm.concepts.solvers import sae


class TopKSAE(ConceptEstimator):
    """TopK sparse autoencoder; components are its decoder rows (``solvers.sae``)."""

    name, solver = "topk-sae", sae
    summary = "TopK sparse autoencoder; components = decoder rows, activations = TopK encoder output"

    def __init__(self, n_concepts: int = 20, k_active: int | None = None, steps: int = 1000,
                 batch_size: int = 256, lr: float = 1e-3, seed: int = 0, device: str | None = None):
        self.n_concepts, self.k_active, self.steps, self.batch_size, self.lr = n_concepts, k_active, steps, batch_size, lr
        self.seed, self.device = seed, device
