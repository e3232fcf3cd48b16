"""Grounding concepts in words: read each concept the way the model reads its layer, and keep
the top tokens that are real English words.

For a concept v (D,) learnt at ``layer``:

  layer "final" (the final norm's output):  logits = lm_head(v)               (V,)
  any other layer (a block output, ...):    logits = lm_head(final_norm(v))   (the logit lens)

``final`` features already are the final norm's output, so a second norm would count its
weights twice and the words would no longer be the model's own readout. ``readout="lm-head"``
reads every layer as lm_head(v), without the final norm: the research code's reading of
block outputs, kept as an option to reproduce its words. Tokens are decoded,
stripped of their leading-space markers and lower-cased, so "Red", " red" and "▁red" count as
one word (their best logit).

Two word filters (``word_filter``):

  "xlvlm" (default): alphabetic, at least 2 letters, not one of 147 English function words
      (:data:`STOPWORDS`), and in the English word list (wordfreq's 50k most frequent, or the
      ``vocabulary`` the caller gives);
  "research": the CoX-LMM research code's: (in the English word list, longer than 2 letters
      and not in its stopword list, 1160 entries or 1158 distinct words with "yes", "no" and
      number words among them) or a number (anything ``float()`` parses). The research code's
      English list is NLTK's ``words`` corpus; here it is the same list as for "xlvlm".
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from xlvlm.concepts.registry import WORD_FILTERS
from xlvlm.errors import XlvlmError

# How a concept becomes logits: "model" as the model reads the layer (above), "lm-head" the LM
# head alone at every layer.
READOUTS = ("model", "lm-head")

STOPWORDS = frozenset("""
a an the and or but if then else of to in on at by for with from as is are was were be been being am do does
did done have has had having it its it's this that these those there here i me my we our you your he him his
she her they them their what which who whom whose when where why how not no nor so than too very can could
will would shall should may might must just also only own same such both each few more most other some any all
about above after again against below between into through during before under over out up down off once
further s t d ll m o re ve y isn aren wasn weren don doesn didn hasn haven hadn won wouldn shan shouldn mustn
mightn couldn needn ain ma
""".split())

_RESEARCH_STOPWORDS = Path(__file__).resolve().parents[2] / "data" / "stopwords" / "research.txt"


@lru_cache(maxsize=1)
def research_stopwords() -> frozenset:
    """The research code's stopword list (1160 entries, 1158 distinct words; shipped with xlvlm)."""
    lines = _RESEARCH_STOPWORDS.read_text(encoding="utf-8").splitlines()
    return frozenset(w.strip() for w in lines if w.strip() and not w.startswith("#"))


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


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def is_word(text: str, vocabulary: frozenset | None = None, word_filter: str = "xlvlm") -> bool:
    """Whether a normalised token ``text`` is kept as a word (see the module docstring)."""
    words = english_words() if vocabulary is None else vocabulary
    if word_filter == "research":
        if _is_number(text):
            return True
        return text.isalpha() and len(text) > 2 and text not in research_stopwords() and (not words or text in words)
    if word_filter != "xlvlm":
        raise XlvlmError(f"unknown word filter {word_filter!r}: use one of {', '.join(WORD_FILTERS)}")
    if not text.isalpha() or len(text) < 2 or text in STOPWORDS:
        return False
    return not words or text in words


def check_vocabulary(tokenizer, vocabulary: frozenset | None, source: str) -> None:
    """Refuse a word list (``source``: where it came from) of which no word is a token of
    ``tokenizer``: grounding would find no word for any concept. Tokens count without their
    leading-space marks ("Ġred", "▁red" -> "red") and case."""
    if vocabulary is None:
        return
    tokens = {_normalise(token.lstrip("Ġ▁")) for token in tokenizer.get_vocab()}
    if not tokens & {_normalise(word) for word in vocabulary}:
        sample = ", ".join(sorted(vocabulary)[:3])
        raise XlvlmError(f"{source}: none of its {len(vocabulary)} words ({sample}, ...) is a token of the model's "
                         f"vocabulary, so no concept would get a word; give words (one per line) the model knows")


def top_words(logits: torch.Tensor, tokenizer, top_k: int = 10, vocabulary: frozenset | None = None,
              scan: int = 2000, word_filter: str = "xlvlm") -> list[str]:
    """The ``top_k`` best-scoring words of one logit vector (V,), among its ``scan`` best tokens."""
    order = torch.argsort(logits, descending=True)[:scan].tolist()
    words: list[str] = []
    for token_id in order:
        word = _normalise(tokenizer.decode([token_id], skip_special_tokens=True))
        if word in words or not is_word(word, vocabulary, word_filter):
            continue
        words.append(word)
        if len(words) == top_k:
            break
    return words


def reads_through_norm(vlm, layer) -> bool:
    """False for the final norm's output (``"final"`` or the norm's module name), which the LM
    head reads directly; True for every other layer (the logit lens), and for ``None`` (a
    direction of unknown origin is read as a block output)."""
    from xlvlm.hooks import resolve_layer

    return layer is None or resolve_layer(vlm, layer).module is not vlm.final_norm


def ground_text(vlm, components: torch.Tensor, layer=None, top_k: int = 10, vocabulary: frozenset | None = None,
                word_filter: str = "xlvlm", scan: int = 2000, readout: str = "model") -> list[list[str]]:
    """Top words of each concept: (K, D) components learnt at ``layer`` -> K lists of up to
    ``top_k`` words.

    layer: the layer the features came from ("final", a block index or a module name): it
    decides whether the final norm is applied before the LM head (see the module docstring).
    Pass it: without it (``None``, kept so that ``ground_text(vlm, V, top_k=10)`` of the public
    contract still runs) V is read as a block output, which is wrong for ``"final"`` features.
    vocabulary: the accepted words (default: wordfreq's English list); pass the model
    tokenizer's own words for a small model with a closed vocabulary. word_filter: "xlvlm" or
    "research". scan: how many of the best tokens are looked at (the research code: 50).
    readout: "model" (the final norm for every layer but the final one, as above) or "lm-head"
    (the LM head alone, as the research code reads every layer).
    """
    from xlvlm.hooks import require_vlm

    require_vlm(vlm, "ground_text")
    if word_filter not in WORD_FILTERS:
        raise XlvlmError(f"unknown word filter {word_filter!r}: use one of {', '.join(WORD_FILTERS)}")
    if readout not in READOUTS:
        raise XlvlmError(f"unknown readout {readout!r}: use one of {', '.join(READOUTS)}")
    through_norm = readout == "model" and reads_through_norm(vlm, layer)
    logits = vlm.unembed(torch.as_tensor(components), through_norm=through_norm)
    return [top_words(row, vlm.tokenizer, top_k=top_k, vocabulary=vocabulary, scan=scan, word_filter=word_filter)
            for row in logits]


# params: ground_text's keywords plus the baseline's own n, scale and scan
def random_word_baseline(vlm, n: int, layer, hidden_size: int | None = None, top_k: int = 10, seed: int = 0,
                         scale: float | None = None, vocabulary: frozenset | None = None,
                         word_filter: str = "xlvlm", scan: int = 2000, readout: str = "model") -> list[list[str]]:
    """Words decoded from ``n`` random directions, read as ``layer`` is, through the same
    filters: the chance level of every word-based metric."""
    generator = torch.Generator().manual_seed(seed)
    d = hidden_size or vlm.hidden_size
    directions = torch.randn(n, d, generator=generator)
    if scale is not None:
        directions = directions / directions.norm(dim=1, keepdim=True) * scale
    return ground_text(vlm, directions, layer, top_k=top_k, vocabulary=vocabulary, word_filter=word_filter, scan=scan,
                       readout=readout)
