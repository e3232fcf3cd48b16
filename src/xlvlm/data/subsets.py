"""Subsets of samples: by a word in the references, by a word class, by an id file, at random.

A sample's *references* are its ``answer``, its ``answers`` (VQAv2 annotators) and its
``captions`` (COCO). Words match whole words, case-insensitively: the text and the word are
lower-cased and split into runs of letters and digits (so ``red`` matches "A red car." and
"RED", not "bored"; ``dog`` matches "dog's"; plurals are different words). A word of several
parts (``fire hydrant``) matches those parts in a row.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from xlvlm.data._common import read_lines
from xlvlm.data.wordlists import load_word_class
from xlvlm.errors import XlvlmError

_WORD = re.compile(r"\w+")


def words_of(text: str) -> list[str]:
    """Lower-cased runs of letters and digits, in order."""
    return _WORD.findall(str(text).lower())


def reference_texts(sample: dict) -> list[str]:
    """The sample's ``answer``, ``answers`` and ``captions``, as strings."""
    texts = []
    if isinstance(sample.get("answer"), str):
        texts.append(sample["answer"])
    for key in ("answers", "captions"):
        values = sample.get(key)
        if isinstance(values, list):
            texts.extend(v["answer"] if isinstance(v, dict) and "answer" in v else str(v) for v in values)
    return texts


def _contains_any(texts: list[str], phrases: list[list[str]]) -> bool:
    for text in texts:
        tokens = words_of(text)
        for phrase in phrases:
            n = len(phrase)
            if any(tokens[i:i + n] == phrase for i in range(len(tokens) - n + 1)):
                return True
    return False


def read_ids_file(path: str | Path) -> list[str]:
    """Ids, one per line; blank lines and lines starting with ``#`` are skipped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise XlvlmError(f"{path}: id file not found")
    return read_lines(path, "id file", "one sample id")


def select_subset(
    samples: list[dict],
    contains: str | list[str] | None = None,
    word_class: str | None = None,
    ids_file: str | Path | None = None,
    n: int | None = None,
    seed: int = 0,
    answer_type: str | list[str] | None = None,
) -> list[dict]:
    """The samples that pass every filter given, in their original order.

    - ``ids_file``: only samples whose id is listed (every listed id must exist).
    - ``answer_type``: samples whose ``answer_type`` is this one (or any of a list / a comma
      list), e.g. VQAv2's and easy-VQA's ``yes/no``.
    - ``contains``: a word (or a list of words, any of them) in the references.
    - ``word_class``: any word of a class (``colors``, ``places``, ``sentiments`` or a file
      with one word per line) in the references.
    - ``n``: then ``n`` of the remaining samples drawn without replacement by
      ``random.Random(seed)``; the same samples, seed and ``n`` always give the same subset.
    """
    selected = list(samples)
    if ids_file is not None:
        wanted = read_ids_file(ids_file)
        present = {s["id"] for s in selected}
        missing = [i for i in wanted if i not in present]
        if missing:
            raise XlvlmError(f"{ids_file}: {len(missing)} id(s) not in the data, e.g. {missing[0]!r}; check the file matches the data")
        wanted = set(wanted)
        selected = [s for s in selected if s["id"] in wanted]
    if answer_type is not None:
        kinds = [t.strip() for t in answer_type.split(",")] if isinstance(answer_type, str) else list(answer_type)
        found = sorted({str(s.get("answer_type")) for s in selected})
        selected = [s for s in selected if s.get("answer_type") in kinds]
        if not selected:
            raise XlvlmError(f"no sample has answer_type {answer_type!r}; the data has: {', '.join(found)[:200]}")
    if contains is not None:
        words = [contains] if isinstance(contains, str) else list(contains)
        phrases = [words_of(w) for w in words if words_of(w)]
        if not phrases:
            raise XlvlmError(f"contains={contains!r} has no letters or digits; give a word")
        selected = [s for s in selected if _contains_any(reference_texts(s), phrases)]
        if not selected:
            raise XlvlmError(f"no sample's answer or captions contain {contains!r}; check the word or the data")
    if word_class is not None:
        phrases = [words_of(w) for w in load_word_class(word_class) if words_of(w)]
        selected = [s for s in selected if _contains_any(reference_texts(s), phrases)]
        if not selected:
            raise XlvlmError(f"no sample's answer or captions contain a word of class {word_class!r}; check the class or the data")
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise XlvlmError(f"n={n!r}: the number of random samples must be a positive integer")
        if n > len(selected):
            raise XlvlmError(f"n={n} but only {len(selected)} samples match; ask for at most {len(selected)}")
        chosen = sorted(random.Random(seed).sample(range(len(selected)), n))
        selected = [selected[i] for i in chosen]
    return selected
