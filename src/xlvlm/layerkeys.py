"""The one rule for layer keys as users write them: ``3``, ``"3"``, ``-1``, ``"final"``.

Stores, recordings, steering vectors and conditions key their layers by a string: ``"3"`` for
decoder block 3, ``"final"`` for the final norm, or a raw module name. Users may write an int
or its string anywhere; :func:`layer_key` turns either into the stored spelling and
:func:`find_layer` looks it up among the keys something holds, counting negatives from the end
when the number of decoder layers is known. Kept free of torch so light modules can use it.
"""

from __future__ import annotations

import operator
from typing import Iterable

from xlvlm.errors import XlvlmError


def layer_key(layer) -> str:
    """The stored spelling of a layer: ints (also numpy/torch integers) and digit strings give
    ``"3"`` / ``"-1"``; other strings are stripped ("final", module names). Anything else
    (a float, a bool, None) is a one-line XlvlmError."""
    if isinstance(layer, str):
        text = layer.strip()
        try:
            return str(int(text))  # " 03 " -> "3"
        except ValueError:
            if not text:
                raise XlvlmError("empty layer name: use a block index (e.g. 3), 'final', or a module name") from None
            return text
    if isinstance(layer, bool):
        raise XlvlmError(f"layer {layer!r} is not a layer: use a block index (e.g. 3), 'final', or a module name")
    try:
        return str(operator.index(layer))
    except TypeError:
        raise XlvlmError(f"layer {layer!r} ({type(layer).__name__}) is not a layer: use a block index (e.g. 3), "
                         f"'final', or a module name") from None


def find_layer(layer, keys: Iterable[str], num_layers: int | None = None) -> str | None:
    """The key among ``keys`` that ``layer`` names (a negative index counts from the end when
    ``num_layers`` is known), or None when none does."""
    keys = list(keys)
    key = layer_key(layer)
    if key in keys:
        return key
    try:
        index = int(key)
    except ValueError:
        return None
    if num_layers and -num_layers <= index < 0 and str(index % num_layers) in keys:
        return str(index % num_layers)
    return None
