"""The decomposition methods by name (one module each)."""

from __future__ import annotations

from xlvlm.concepts import kmeans, nmf, nndl, pca, sae, simple, snmf
from xlvlm.concepts._method import Method
from xlvlm.choices import CONCEPT_METHODS
from xlvlm.errors import XlvlmError

METHODS: dict[str, Method] = {m.METHOD.name: m.METHOD for m in (snmf, nndl, kmeans, pca, nmf, simple, sae)}
# The command line lists the names from xlvlm.choices without importing the methods (and torch).
assert tuple(METHODS) == CONCEPT_METHODS, "xlvlm.choices.CONCEPT_METHODS must name the registered methods"


def get_method(name: str) -> Method:
    """The Method called ``name``, or an XlvlmError listing the known ones."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise XlvlmError(f"unknown concept method {name!r}; use one of: {', '.join(METHODS)}") from None
