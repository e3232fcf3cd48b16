"""The front doors: ``learn_concepts`` (a matrix in memory) and ``learn_concepts_streaming``
(a feature store's layer, one minibatch at a time). Both build the method's estimator
(``xlvlm.concepts.estimators``) and return a ConceptDictionary."""

from __future__ import annotations

from xlvlm.concepts.dictionary import ConceptDictionary
from xlvlm.concepts.estimators import ConceptEstimator
from xlvlm.concepts.registry import get_method
from xlvlm.errors import XlvlmError


def learn_concepts(
    X, method: str = "snmf", n_concepts: int = 20, seed: int = 0, device=None, **options
) -> ConceptDictionary:
    """Learn K concepts from features X (N, D) -> ConceptDictionary (components (K, D), activations (N, K)).

    X: torch.Tensor or numpy array, any real dtype; the fit runs in float32 on X's device, or
    on ``device`` when given. method: ``snmf`` (default), ``nndl``, ``kmeans``, ``pca``,
    ``nmf``, ``simple``, ``topk-sae`` or ``minibatch-kmeans``; ``options`` are that method's
    own (e.g. ``l1=0.05`` for snmf, ``alpha=1.0`` for nndl; see
    ``xlvlm.concepts.METHODS[name].defaults``). The same as
    ``METHODS[method](n_concepts, seed=seed, device=device, **options).fit_transform(X)``.
    The same seed on the same device and input gives the same result.
    """
    estimator = _estimator(method, n_concepts, seed, device, options, ignored=())
    activations = estimator.fit_transform(X)  # as X's kind; to_dictionary takes it back to the fit's device
    return estimator.to_dictionary(activations)


# params: the documented streaming door: learn_concepts' keywords plus batch_rows
def learn_concepts_streaming(store, layer, method: str = "snmf", n_concepts: int = 20, batch_rows: int = 4096,
                             seed: int = 0, device=None, present_only: bool = True, progress: bool = False,
                             **options) -> ConceptDictionary:
    """Learn K concepts from a FeatureStore's rows at ``layer`` without loading them all.

    store: a FeatureStore or its folder. method: ``snmf`` or ``kmeans`` (streamed as
    ``minibatch-kmeans``; the dictionary says so); options are the estimator's, less those
    only an in-memory fit reads. batch_rows: rows per minibatch (memory ~ batch_rows x D
    floats). present_only: leave out the rows of samples without a match (NaN rows).
    device: where the minibatches are processed (default CPU). Each iteration is a pass over
    the store, so mind ``max_iter``: e.g. ``max_iter=10, tol=1e-3`` for snmf. Returns a
    ConceptDictionary: components (K, D), activations (N, K) in store order.
    """
    from xlvlm.concepts.estimators.streaming import fit_store

    name = {"kmeans": "minibatch-kmeans"}.get(method, method)
    if not hasattr(get_method(name), "fit_passes"):
        raise XlvlmError(f"method {method!r} cannot stream; use one of: snmf, kmeans, minibatch-kmeans "
                         f"(or load the features and call learn_concepts)")
    estimator = _estimator(name, n_concepts, seed, device, options, ignored=get_method(name).stream_ignores)
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise XlvlmError(f"batch_rows must be a positive integer, got {batch_rows!r}")
    if not isinstance(estimator.init_rows, int) or estimator.init_rows < n_concepts:
        raise XlvlmError(f"init_rows={estimator.init_rows!r} must be an integer >= n_concepts={n_concepts}")
    activations, passes = fit_store(estimator, store, layer, batch_rows, present_only, progress)
    estimator.info_["passes"] = passes
    return estimator.to_dictionary(activations, streaming=True, batch_rows=batch_rows)


def _estimator(method: str, n_concepts, seed, device, options: dict, ignored: tuple) -> ConceptEstimator:
    """The estimator for ``method`` with checked options (those in ``ignored`` are refused too)."""
    cls = get_method(method)
    known = [name for name in cls.defaults if name not in ignored]
    unknown = sorted(set(options) - set(known))
    if unknown:
        where = "streaming " if ignored else ""
        raise XlvlmError(f"unknown option(s) {', '.join(unknown)} for {where}method {method!r}; "
                         f"its options are: {', '.join(known) or 'none'}")
    estimator = cls(n_concepts=n_concepts, seed=seed, device=device, **options)
    estimator._check_params()
    return estimator
