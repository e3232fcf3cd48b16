"""Pairs of runs to patch between: a clean sample and a corrupted one, matched by id.

A pair is two samples (dicts with ``image`` and ``prompt``) whose templated token sequences
align: the same length, and the image tokens at the same positions, so that position ``t`` of
the clean run and position ``t`` of the corrupted run play the same part (e.g. the same
question on two images that differ in one attribute, or one image with two questions whose
tokens count the same). Patching copies clean states into the corrupted run position by
position, so a pair that does not align is refused, naming it.

Causal tracing has no corrupted sample: the corrupted run is the clean one with noise on its
image tokens' input embeddings (:mod:`xlvlm.patching.exact`); its pairs have ``corrupted``
None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from xlvlm.data.samples import check_samples
from xlvlm.errors import XlvlmError


@dataclass(frozen=True)
class Pair:
    """``id``; ``clean`` and ``corrupted`` samples (``corrupted`` None for causal tracing);
    ``answers``: the answer(s) the metric reads (``(clean answer, corrupted answer)`` for a logit
    difference, one answer for a probability)."""

    id: str
    clean: dict
    corrupted: dict | None
    answers: tuple[str, ...]


def _answers(clean: dict, corrupted: dict | None, answers, where: str) -> tuple[str, ...]:
    """The metric's answers of one pair: those given, else the samples' own ``answer`` fields
    (clean first), else a one-line error saying what to add."""
    if answers:
        if isinstance(answers, str) or not all(isinstance(a, str) and a.strip() for a in answers):
            raise XlvlmError(f"answers: give a list of non-empty answer strings, e.g. ['red', 'blue'], not {answers!r:.60}")
        return tuple(answers)
    found = [s.get("answer") for s in (clean, corrupted) if s is not None]
    if all(isinstance(a, str) and a.strip() for a in found):
        return tuple(found)
    raise XlvlmError(f"{where}: no answers for the metric; give each sample an 'answer' (clean and corrupted) "
                     f"or pass answers (--answers A,B)")


def make_pairs(clean: Sequence[dict], corrupted: Sequence[dict] | None = None,
               answers: Sequence[str] | None = None) -> list[Pair]:
    """Pairs from two lists of samples matched by ``id`` (in the clean list's order), or causal
    tracing pairs from the clean samples alone (``corrupted`` None).

    answers: the metric's answers for every pair; default: each pair's samples' ``answer``
    fields (with tracing, the clean answer, and then the metric is its probability unless two
    answers are given). A clean id with no corrupted sample is a one-line error naming it.
    """
    clean = check_samples(clean, where="clean samples")
    if corrupted is None:
        return [Pair(s["id"], s, None, _answers(s, None, answers, f"clean sample {s['id']!r}")) for s in clean]
    by_id = {s["id"]: s for s in check_samples(corrupted, where="corrupted samples")}
    pairs = []
    for sample in clean:
        other = by_id.get(sample["id"])
        if other is None:
            raise XlvlmError(f"pair {sample['id']!r}: no corrupted sample with this id; give every clean sample a "
                             f"corrupted one with the same id")
        pairs.append(Pair(sample["id"], sample, other, _answers(sample, other, answers, f"pair {sample['id']!r}")))
    if not pairs:
        raise XlvlmError("no pairs: the clean samples are empty")
    return pairs


def check_aligned(pair_id: str, clean_ids: list[int], corrupted_ids: list[int], image_token: int | None) -> None:
    """One-line error unless two real token rows align: same length, image tokens at the same
    positions (the template and image size agree)."""
    if len(clean_ids) != len(corrupted_ids):
        raise XlvlmError(f"pair {pair_id!r}: the clean and corrupted prompts are {len(clean_ids)} and "
                         f"{len(corrupted_ids)} tokens long; pair samples whose templated prompts have the same "
                         f"length (same template, image size, and question length in tokens)")
    if image_token is not None:
        where = [[i for i, t in enumerate(row) if t == image_token] for row in (clean_ids, corrupted_ids)]
        if where[0] != where[1]:
            raise XlvlmError(f"pair {pair_id!r}: the image tokens sit at different positions in the clean and "
                             f"corrupted prompts; pair samples with the same template and image size")
