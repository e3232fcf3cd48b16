"""The names ``xlvlm.concepts`` offers, each written once here: the decomposition methods (one
estimator class each, in :mod:`xlvlm.concepts.estimators`), the "simple" method's activations and
the word filters of text grounding.

Light to import (the command line reads its choices here): the estimator classes are imported
when one is looked up, and each class takes its ``name`` from here.
"""

from __future__ import annotations

from xlvlm.errors import XlvlmError
from xlvlm.lazy import Registry

#: name -> a ConceptEstimator subclass, in the order the command line lists them.
METHODS = Registry({
    "snmf": "xlvlm.concepts.estimators.factorization:SemiNMF",
    "nndl": "xlvlm.concepts.estimators.factorization:NNDL",
    "kmeans": "xlvlm.concepts.estimators.clustering:KMeans",
    "pca": "xlvlm.concepts.estimators.projection:PCA",
    "nmf": "xlvlm.concepts.estimators.factorization:NMF",
    "simple": "xlvlm.concepts.estimators.projection:Simple",
    "topk-sae": "xlvlm.concepts.estimators.autoencoder:TopKSAE",
    "minibatch-kmeans": "xlvlm.concepts.estimators.clustering:MiniBatchKMeans",
})
#: name -> the class of a dictionary that is loaded, not learnt (a pretrained SAE): a saved
#: dictionary of it transforms like any other; learn_concepts does not offer it.
LOADED = Registry({"sae": "xlvlm.concepts.estimators.pretrained:PretrainedSAE"})

#: How method "simple" activates (:mod:`xlvlm.concepts.solvers.simple`).
SIMPLE_ACTIVATIONS = ("projection", "distance")
#: Which decoded tokens count as words (:mod:`xlvlm.concepts.grounding.text`).
WORD_FILTERS = ("xlvlm", "research")


def register(cls: type) -> type:
    """Serve ``cls.name`` with ``cls`` (an estimator of your own)."""
    METHODS[cls.name] = cls
    return cls


def registered_name(cls: type) -> str | None:
    """The name ``cls`` is registered under in METHODS or LOADED, or None."""
    return METHODS.name_of(cls) or LOADED.name_of(cls)


def get_method(name: str) -> type:
    """The estimator class called ``name``, or an XlvlmError listing the known ones."""
    try:
        return METHODS[name] if name in METHODS else LOADED[name]
    except (KeyError, TypeError):
        raise XlvlmError(f"unknown concept method {name!r}; use one of: {', '.join(METHODS)}") from None
