"""Tiny random-weight models of the real transformers classes, built offline.

Tests (and users without network) use them to exercise the same loading path as a hub id:
build, ``save_pretrained`` to a folder, then ``xlvlm.load_vlm(folder)``.
"""

from xlvlm.testing.tiny import build_tiny, TINY_FAMILIES, tiny_builders, tiny_vocabulary, train_word_tokenizer

__all__ = ["build_tiny", "TINY_FAMILIES", "tiny_builders", "tiny_vocabulary", "train_word_tokenizer"]
