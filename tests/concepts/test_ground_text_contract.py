"""The public contract's call ``ground_text(vlm, components, top_k=10)`` (DESIGN.md §3) keeps working:
without a layer, V is read as a block output (final norm, then the LM head)."""

import torch

import xlvlm
from xlvlm.concepts.grounding.text import ground_text


def test_ground_text_without_layer_reads_as_a_block_output(vlm_of):
    vlm = vlm_of("llava")
    V = torch.randn(3, vlm.hidden_size, generator=torch.Generator().manual_seed(0))
    vocabulary = frozenset(w for w in vlm.tokenizer.get_vocab() if w.isalpha())
    without = xlvlm.ground_text(vlm, V, top_k=4, vocabulary=vocabulary)
    assert without == ground_text(vlm, V, 0, top_k=4, vocabulary=vocabulary)
    assert len(without) == 3 and all(len(words) <= 4 for words in without)
