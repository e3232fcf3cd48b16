"""Estimators that learn from minibatches: ``partial_fit`` with scikit-learn's meaning (every
call updates the model, so a plain loop over minibatches learns), and ``fit_passes`` for the
pass-based fits of a store larger than memory (``streaming.fit_store``)."""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from xlvlm.concepts._validate import InputError
from xlvlm.concepts.estimators.base import ConceptEstimator


class OnlineEstimator(ConceptEstimator):
    """``partial_fit(Z_b)``: the first call starts the model from Z_b's rows (a k-means start,
    or the SAE's initialisation) and learns from them; every call then takes the method's
    online step (``_update``). After fit() or from_dictionary, partial_fit continues from the
    fitted components. ``fit_passes(read_pass)`` runs the method's passes over
    ``read_pass()``'s minibatches after a start."""

    def partial_fit(self, X, y=None) -> "OnlineEstimator":
        """Update the model with minibatch X (B, D) (the first call also starts it); returns self."""
        with torch.no_grad():
            if not hasattr(self, "components_"):
                Z = self._begin(X)
                self._start_on(Z)
            else:
                Z = self._rows(X, reset=False, device=self.components_.device)
                if not hasattr(self, "_minibatches"):  # fitted by fit() or loaded: continue from there
                    self._resume()
                    self._minibatches = True
            self._update(Z)
        return self

    def _start_on(self, Z: torch.Tensor) -> None:
        """Start a minibatch run from the checked rows Z (N, D) (a sample of the data), without
        learning from them yet."""
        self._check_rows(Z.shape[0])
        self._start(Z)
        self._minibatches = True

    def _start(self, Z: torch.Tensor) -> None:
        raise NotImplementedError

    def _resume(self) -> None:
        """Make the running state of a minibatch run for the fitted components (after fit() or
        from_dictionary); the running statistics start empty."""
        raise NotImplementedError

    def _update(self, Z: torch.Tensor) -> None:
        raise NotImplementedError

    def _require_start(self) -> None:
        if not hasattr(self, "_minibatches"):
            raise InputError("fit_passes() before a start; call partial_fit(sample) first")

    def _minibatches_of(self, read_pass: Callable[[], Iterable]) -> Iterable[torch.Tensor]:
        """The checked minibatches of one pass of ``read_pass()``."""
        for X in read_pass():
            yield self._rows(X, reset=False, device=self.components_.device)

    def _one_pass(self, read_pass: Callable[[], Iterable]):
        """partial_fit on every minibatch of ``read_pass()``, then end_pass(); its result."""
        for X in read_pass():
            self.partial_fit(X)
        return self.end_pass()
