"""The decomposition methods by name: one estimator class each (``xlvlm.concepts.estimators``).

:mod:`xlvlm.concepts.estimators` registers its classes here when it is imported (the package's
``__init__`` imports it), so that this module imports no estimator: a loaded
:class:`~xlvlm.concepts.dictionary.ConceptDictionary` finds its class by name here while the
estimators build dictionaries, without an import cycle (.importlinter forbids cycles).
"""

from __future__ import annotations

from xlvlm.errors import XlvlmError

#: name -> a ConceptEstimator subclass.
METHODS: dict[str, type] = {}
#: name -> the class of a dictionary that is loaded, not learnt (a pretrained SAE): a saved
#: dictionary of it transforms like any other; learn_concepts does not offer it.
LOADED: dict[str, type] = {}


def register(cls: type) -> type:
    """Serve ``cls.name`` with ``cls``."""
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type:
    """The estimator class called ``name``, or an XlvlmError listing the known ones."""
    try:
        return METHODS[name] if name in METHODS else LOADED[name]
    except (KeyError, TypeError):
        raise XlvlmError(f"unknown concept method {name!r}; use one of: {', '.join(METHODS)}") from None
