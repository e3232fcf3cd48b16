"""A sparse autoencoder: TopK; its decoder rows are the concepts."""

from __future__ import annotations

import torch

from xlvlm.concepts.estimators.online import OnlineEstimator
from xlvlm.concepts.solvers import sae


class TopKSAE(OnlineEstimator):
    """TopK sparse autoencoder; components are its decoder rows (``solvers.sae``).
    ``partial_fit``: the first call initialises the SAE from its rows, and every call takes one
    optimiser step on its rows (``lr``, ``k_active``; ``steps`` and ``batch_size`` are fit's)."""

    solver = sae
    run_state = ("_sae",)
    summary = "TopK sparse autoencoder; components = decoder rows, activations = TopK encoder output"

    # params: a scikit-learn estimator's hyperparameters are its constructor's keywords (get_params reads them)
    def __init__(self, n_concepts: int = 20, k_active: int | None = None, steps: int = 1000,
                 batch_size: int = 256, lr: float = 1e-3, seed: int = 0, device: str | None = None,
                 n_components: int | None = None, random_state=None):
        self.n_concepts, self.k_active, self.steps, self.batch_size, self.lr = n_concepts, k_active, steps, batch_size, lr
        self.seed, self.device, self.n_components, self.random_state = seed, device, n_components, random_state

    def _start(self, Z: torch.Tensor) -> None:
        self._sae = sae.start(Z, self.concepts_count(), self._generator(Z.device), self.lr)
        components, state = sae.learned(self._sae)
        self._learned(components, state, {"n_iter": 0})

    def _learned(self, components: torch.Tensor, state: dict, info: dict) -> None:
        super()._learned(components, state, {**info, "k_active": sae.active_count(self.k_active, components.shape[0])})

    def _resume(self) -> None:
        state = self.state_
        self._sae = sae.resume(self.components_, state["encoder"], state["encoder_bias"], state["decoder_bias"],
                               state["scale"], self.lr)
        components, state = sae.learned(self._sae)
        self._learned(components, state, {**self.info_, "n_iter": self.n_iter_ or 0})

    def _update(self, Z: torch.Tensor) -> None:
        sae.train_step(self._sae, Z, self.info_["k_active"])
        self.n_iter_ = self.info_["n_iter"] = self.n_iter_ + 1
