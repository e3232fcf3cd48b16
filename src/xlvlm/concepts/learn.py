"""``learn_concepts``: one entry point for every decomposition method."""

from __future__ import annotations

import json

import torch

from xlvlm.concepts._validate import as_features
from xlvlm.concepts.dictionary import ConceptDictionary
from xlvlm.concepts.registry import get_method
from xlvlm.errors import XlvlmError


def learn_concepts(
    X, method: str = "snmf", n_concepts: int = 20, seed: int = 0, device=None, **options
) -> ConceptDictionary:
    """Learn K concepts from features X (N, D) -> ConceptDictionary (components (K, D), activations (N, K)).

    X: torch.Tensor or numpy array, any real dtype; the fit runs in float32 on X's device, or
    on ``device`` when given. method: ``snmf`` (default), ``nndl``, ``kmeans``, ``pca``,
    ``nmf``, ``simple`` or ``topk-sae``; ``options`` are that method's own (e.g. ``l1=0.05``
    for snmf, ``alpha=1.0`` for nndl; see ``xlvlm.concepts.METHODS[name].defaults``).
    The same seed on the same device and input gives the same result.
    """
    spec = get_method(method)
    unknown = sorted(set(options) - set(spec.defaults))
    if unknown:
        known = ", ".join(spec.defaults) or "none"
        raise XlvlmError(f"unknown option(s) {', '.join(unknown)} for method {method!r}; its options are: {known}")
    if isinstance(n_concepts, bool) or not isinstance(n_concepts, int) or n_concepts < 1:
        raise XlvlmError(f"n_concepts must be a positive integer, got {n_concepts!r}")
    Z = as_features(X, device=device)
    if n_concepts > Z.shape[0]:
        raise XlvlmError(
            f"n_concepts={n_concepts} is more than the {Z.shape[0]} samples in X; "
            f"ask for at most {Z.shape[0]} concepts or give more samples"
        )
    resolved = {**spec.defaults, **options}
    params = {"n_concepts": n_concepts, "seed": int(seed), **resolved}
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError):
        raise XlvlmError(f"options for {method!r} must be plain numbers, strings or None, got {options!r}") from None
    generator = torch.Generator(device=Z.device).manual_seed(int(seed))
    with torch.no_grad():
        fitted = spec.fit(Z, n_concepts, generator, **resolved)
    # Contiguous row-major tensors: matmul kernels pick their path by layout, so a dictionary
    # and its saved-and-loaded copy then transform to bit-identical codes.
    state = {name: t.contiguous() for name, t in fitted.state.items()}
    return ConceptDictionary(
        fitted.components.contiguous(), fitted.activations.contiguous(), spec.name, params, state, fitted.info
    )
