"""Word classes (colors, places, sentiments, or a user file with one word per line)."""

from __future__ import annotations

from pathlib import Path

from xlvlm.data._common import read_lines
from xlvlm.errors import XlvlmError

_SHIPPED = Path(__file__).with_name("wordlists")


def shipped_word_classes() -> list[str]:
    return sorted(p.stem for p in _SHIPPED.glob("*.txt"))


def load_word_class(name_or_path: str) -> list[str]:
    """Words of a shipped class (``colors``, ``places``, ``sentiments``) or of a text file."""
    path = _SHIPPED / f"{name_or_path}.txt"
    if not path.is_file():
        path = Path(name_or_path)
    if not path.is_file():
        raise XlvlmError(f"unknown word class {name_or_path!r}: use one of {shipped_word_classes()} or a file with one word per line")
    return read_lines(path, "word class file", "one word")
