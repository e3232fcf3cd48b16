"""Tiny random-weight models of the VLM families that :mod:`xlvlm.testing.tiny` does not build,
one module per family, each faithful to its real hub checkpoint where tokenization and batching
depend on it (special tokens, chat template, BOS, padding side, image processor class).

``BUILDERS`` maps a family's ``config.model_type`` to ``build(folder, seed=0) -> Path``; the
family's module (and transformers' classes) is imported only when its builder is called.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

# model_type -> module of this package (the same names: one module per family).
FAMILIES = ("gemma3", "smolvlm", "idefics3", "internvl", "aya_vision", "mistral3", "mllama", "paligemma", "qwen3_vl", "llava_next", "llava_onevision", "glm4v")


def _lazy(module: str) -> Callable[..., Path]:
    def build(folder: str | Path, seed: int = 0) -> Path:
        return importlib.import_module(f"{__name__}.{module}").build(folder, seed=seed)

    build.__name__ = build.__qualname__ = f"build_{module}"
    build.__doc__ = f"Build the tiny {module} model into ``folder`` (see ``{__name__}.{module}``)."
    return build


BUILDERS: dict[str, Callable[..., Path]] = {family: _lazy(family) for family in FAMILIES}
