"""Tiny random-weight models of the real transformers classes, built offline.

Tests (and users without network) use them to exercise the same loading path as a hub id:
build, ``save_pretrained`` to a folder, then ``xlvlm.load_vlm(folder)``.
"""

from __future__ import annotations

from pathlib import Path

from xlvlm.testing.builders import BUILDERS
from xlvlm.testing.tiny import TINY_FAMILIES, tiny_vocabulary, train_word_tokenizer


def tiny_builders() -> dict:
    """Every tiny builder by ``model_type``: :data:`~xlvlm.testing.tiny.TINY_FAMILIES` and
    :data:`xlvlm.testing.builders.BUILDERS`."""
    return {**TINY_FAMILIES, **BUILDERS}


def build_tiny(family: str, folder: str | Path, seed: int = 0) -> Path:
    """Build a tiny random-weight model of ``family`` (a ``model_type``) into ``folder``; returns it."""
    builders = tiny_builders()
    if family not in builders:
        raise KeyError(f"no tiny builder for {family!r}; known: {sorted(builders)}")
    return builders[family](folder, seed=seed)


__all__ = ["build_tiny", "TINY_FAMILIES", "tiny_builders", "tiny_vocabulary", "train_word_tokenizer"]
