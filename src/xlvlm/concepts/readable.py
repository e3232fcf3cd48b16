"""Concepts output that a person reads: grounded words without the chat template's own words,
and each concept's top samples as question, answer and image.

Grounded words come from the unembedding of a concept, and a model's residual stream carries
its chat template everywhere ("user", "assistant", "image", role markers...). Those words say
nothing about the concept, so :func:`template_words` collects them from the model itself (not
a hand-written list): the alphabetic parts of the tokenizer's special and added tokens and of
the text the chat template renders around a probe conversation (a user turn with an image and
a prompt, an assistant answer; the probe's own words removed). Only rendered text counts: the
template's source also names message keys ("content", "type") and branches never taken (tool
calls), which are not what the model reads.
"""

from __future__ import annotations

import re
from typing import Sequence

from xlvlm.data.images import image_label
from xlvlm.errors import XlvlmError

_WORD = re.compile(r"[A-Za-z]+")
_PROBE_PROMPT, _PROBE_ANSWER = "xlvlmprobeprompt", "xlvlmprobeanswer"


def _words_of(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def template_words(vlm) -> frozenset[str]:
    """Lower-case words of the model's special tokens and chat template (see module)."""
    tokenizer = vlm.tokenizer
    words: set[str] = set()
    special = list(getattr(tokenizer, "all_special_tokens", []))
    special += [str(t) for t in getattr(tokenizer, "added_tokens_decoder", {}).values()]
    for token in special:
        words |= _words_of(token)
    try:
        text, _ = vlm.format_prompt(_PROBE_PROMPT, _PROBE_ANSWER)
        words |= _words_of(text.replace(_PROBE_PROMPT, " ").replace(_PROBE_ANSWER, " "))
    except XlvlmError:  # no chat template: only the special tokens count
        pass
    return frozenset(words)


def readable_words(words: Sequence[str], excluded: frozenset[str], top_k: int) -> list[str]:
    """The first ``top_k`` of ``words`` that are not template words."""
    return [w for w in words if w.lower() not in excluded][:top_k]


def top_sample(sample: dict) -> dict:
    """What a reader needs of one most-activating sample: id, image (a path or an in-memory
    image's label), question (the prompt) and answer (the reference answer, else the model's
    prediction, else None)."""
    answer = sample.get("answer")
    if answer is None:
        answer = sample.get("prediction")
    image = sample.get("image")
    return {"id": sample.get("id"), "image": None if image is None else image_label(image),
            "question": sample.get("prompt"), "answer": answer}


def _clip(text, width: int) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``width`` characters."""
    text = " ".join(str(text).split())
    return _cut(text, width)


def _cut(line: str, width: int) -> str:
    return line if len(line) <= width else line[:width - 1] + "…"


def summary_lines(concepts: Sequence[dict], n_samples: int = 3, n_words: int = 6, width: int = 100,
                  grounded: bool = False) -> list[str]:
    """A compact text view of ``concepts.json``'s concepts: per concept its words, then up to
    ``n_samples`` top samples as ``id  Q: ...  A: ...  [image]``, each line at most ``width``.
    grounded: whether a model grounded the words (then an empty list means none was found)."""
    lines = []
    none = "(no word of the vocabulary among its top tokens)" if grounded else "(no model: no words)"
    for concept in concepts:
        words = ", ".join(concept.get("words", [])[:n_words]) or none
        lines.append(_cut(f"concept {concept['concept']:>2}: {words}", width))
        for sample in concept.get("top_samples", [])[:n_samples]:
            image = str(sample.get("image") or "").rsplit("/", 1)[-1]
            answer = "" if sample.get("answer") is None else f"  A: {_clip(sample['answer'], 30)}"
            tail = f"  [{image}]" if image else ""
            lines.append(_cut(f"    {sample['id']}  Q: {_clip(sample.get('question') or '', 50)}{answer}{tail}", width))
    return lines
