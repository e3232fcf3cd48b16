"""Small helpers shared by the dataset readers: JSON files, fields and one-item-a-line text files,
with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from xlvlm.errors import XlvlmError

DEFAULT_CAPTION_PROMPT = "Describe the image in one sentence."


def load_json(path: str | Path, what: str):
    """Parse a whole JSON file; ``what`` names the file's role in the error message."""
    path = Path(path)
    if not path.is_file():
        raise XlvlmError(f"{path}: {what} not found; check the path")
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise XlvlmError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno} ({exc.msg}); fix or re-download the {what}")
    except UnicodeDecodeError:
        raise XlvlmError(f"{path}: not UTF-8 text; is this really the {what}?")
    except (ValueError, RecursionError) as exc:  # an integer too long to convert, nesting too deep
        raise XlvlmError(f"{path}: unreadable JSON ({type(exc).__name__}); fix or re-download the {what}")


def read_lines(path: Path, what: str, item: str) -> list[str]:
    """The items of a UTF-8 text file with one ``item`` per line (stripped; blank lines and lines
    starting with ``#`` skipped); ``what`` names the file in the one-line errors."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise XlvlmError(f"{path}: {what} is not UTF-8 text; write {item} per line") from None
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise XlvlmError(f"{path}: {what} is empty; write {item} per line")
    return lines


def field(record, name: str, where: str, path: Path, kind: type | tuple[type, ...] | None = None):
    """``record[name]``, or a one-line error naming ``path``, the record (``where``) and the field."""
    if not isinstance(record, dict):
        raise XlvlmError(f"{path}: {where} is not a JSON object; fix or re-download the file")
    if name not in record:
        raise XlvlmError(f"{path}: {where} is missing field {name!r}; fix or re-download the file")
    value = record[name]
    if kind is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise XlvlmError(f"{path}: {where} field {name!r} should be {names}, got {type(value).__name__}; fix the file")
    return value


def image_root_dir(image_root, reader: str) -> Path:
    """The image folder of a dataset, which must exist."""
    if image_root is None:
        raise XlvlmError(f"{reader}: option image_root is required (the folder holding the images)")
    root = Path(image_root).expanduser()
    if not root.is_dir():
        raise XlvlmError(f"{root}: image_root folder not found; pass the folder holding the {reader} images")
    return root.resolve()


def question_prompt(template: str, question: str, reader: str) -> str:
    """Fill a VQA prompt template: ``{question}`` is replaced by the question text."""
    if "{question}" not in template:
        raise XlvlmError(f"{reader}: prompt {template!r} lacks '{{question}}'; a VQA prompt template must contain it")
    return template.replace("{question}", question)
