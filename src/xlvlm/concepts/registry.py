"""The decomposition methods by name: one estimator class each (``xlvlm.concepts.estimators``)."""

from __future__ import annotations

from xlvlm.concepts.estimators import ESTIMATORS, ConceptEstimator
from xlvlm.errors import XlvlmError

METHODS: dict[str, type[ConceptEstimator]] = {cls.name: cls for cls in ESTIMATORS}


def get_method(name: str) -> type[ConceptEstimator]:
    """The estimator class called ``name``, or an XlvlmError listing the known ones."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise XlvlmError(f"unknown concept method {name!r}; use one of: {', '.join(METHODS)}") from None
