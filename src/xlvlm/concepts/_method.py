"""The function-triple shape of a method module (``simple.py`` keeps it; the ``Simple``
estimator in ``xlvlm.concepts.estimators`` wraps it). The other methods are estimator classes
over the solver functions in ``xlvlm.concepts.solvers``.

Notation used across ``xlvlm.concepts`` (Overcomplete style)::

    Z  (N, D)  features: one row per sample (a hidden state), float32
    U  (N, K)  activations / codes: how much of each concept a sample holds (A in Overcomplete)
    V  (K, D)  components / dictionary: one concept direction per row (D in Overcomplete)
    Z ~= U V   for the linear methods; method-specific encoders otherwise (k-means, TopK SAE)

A method is three plain functions over tensors: ``fit`` learns V (and any extra state such
as a mean or an encoder), ``encode`` maps rows of Z to codes with V fixed, ``decode`` maps
codes back to feature space. ``fit`` returns the training codes as ``encode`` computes them,
so that ``transform`` of the training rows gives back the training activations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch


@dataclass
class Fitted:
    """The learned state of one fit.

    components: (K, D) float32; activations: (N, K) float32 for the training rows;
    state: extra named tensors ``encode``/``decode`` need (e.g. the PCA mean (D,));
    info: JSON-able diagnostics (iterations run, convergence, final objective).
    """

    components: torch.Tensor
    activations: torch.Tensor
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    """A decomposition method.

    fit(Z (N, D), n_concepts, generator, **options) -> Fitted
    encode(Z (N, D), components (K, D), state, options) -> (N, K)
    decode(U (N, K), components (K, D), state, options) -> (N, D)
    defaults: every option the method accepts, with its default (plain JSON values).
    """

    name: str
    fit: Callable[..., Fitted]
    encode: Callable[..., torch.Tensor]
    decode: Callable[..., torch.Tensor]
    defaults: dict[str, Any]
    summary: str
