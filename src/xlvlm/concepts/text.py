"""Grounding concepts in words: unembed each concept through the model's final norm and LM
head, and keep the top tokens that are real English words.

For a concept v (D,), logits = lm_head(final_norm(v)) (V,) (``through_norm=False`` skips the
norm). Tokens are decoded, stripped of their leading-space markers and lower-cased, so "Red",
" red" and "▁red" count as one word (their best logit); a word is kept when it is alphabetic,
in the offline English word list (wordfreq's 50k most frequent, plus the words of the model's
vocabulary the caller allows) and not a stopword.
"""

from __future__ import annotations

from functools import lru_cache

import torch

STOPWORDS = frozenset("""
a an the and or but if then else of to in on at by for with from as is are was were be been being am do does
did done have has had having it its it's this that these those there here i me my we our you your he him his
she her they them their what which who whom whose when where why how not no nor so than too very can could
will would shall should may might must just also only own same such both each few more most other some any all
about above after again against below between into through during before under over out up down off once
further s t d ll m o re ve y isn aren wasn weren don doesn didn hasn haven hadn won wouldn shan shouldn mustn
mightn couldn needn ain ma
""".split())


@lru_cache(maxsize=1)
def english_words() -> frozenset:
    """The 50k most frequent English words (wordfreq ships them; no download)."""
    try:
        from wordfreq import top_n_list
    except ImportError:  # the metrics extra is missing: fall back to "alphabetic" only
        return frozenset()
    return frozenset(top_n_list("en", 50000))


def _normalise(piece: str) -> str:
    return piece.strip().lower()


def is_word(text: str, vocabulary: frozenset | None = None) -> bool:
    if not text.isalpha() or len(text) < 2 or text in STOPWORDS:
        return False
    words = english_words() if vocabulary is None else vocabulary
    return not words or text in words


def top_words(logits: torch.Tensor, tokenizer, top_k: int = 10, vocabulary: frozenset | None = None,
              scan: int = 2000) -> list[str]:
    """The ``top_k`` best-scoring real words of one logit vector (V,)."""
    order = torch.argsort(logits, descending=True)[:scan].tolist()
    words: list[str] = []
    for token_id in order:
        word = _normalise(tokenizer.decode([token_id], skip_special_tokens=True))
        if word in words or not is_word(word, vocabulary):
            continue
        words.append(word)
        if len(words) == top_k:
            break
    return words


def ground_text(vlm, components: torch.Tensor, top_k: int = 10, through_norm: bool = True,
                vocabulary: frozenset | None = None) -> list[list[str]]:
    """Top words of each concept: (K, D) components -> K lists of up to ``top_k`` words.

    vocabulary: the accepted words (default: wordfreq's English list); pass the model
    tokenizer's own words for a small model with a closed vocabulary.
    """
    logits = vlm.unembed(torch.as_tensor(components), through_norm=through_norm)
    return [top_words(row, vlm.tokenizer, top_k=top_k, vocabulary=vocabulary) for row in logits]


def random_word_baseline(vlm, n: int, hidden_size: int | None = None, top_k: int = 10, seed: int = 0,
                         scale: float | None = None, through_norm: bool = True,
                         vocabulary: frozenset | None = None) -> list[list[str]]:
    """Words decoded from ``n`` random directions through the same filters: the chance level
    of every word-based metric."""
    generator = torch.Generator().manual_seed(seed)
    d = hidden_size or vlm.hidden_size
    directions = torch.randn(n, d, generator=generator)
    if scale is not None:
        directions = directions / directions.norm(dim=1, keepdim=True) * scale
    return ground_text(vlm, directions, top_k=top_k, through_norm=through_norm, vocabulary=vocabulary)
