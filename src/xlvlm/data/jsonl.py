"""JSONL samples: one JSON object per line with ``id``, ``image``, ``prompt``.

Optional fields (``answer``, ``answer_type``, anything else) travel with the sample into the
feature store. Relative image paths are resolved against the JSONL file's folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from xlvlm.errors import XlvlmError

REQUIRED_FIELDS = ("id", "image", "prompt")


def iter_json_lines(path: Path):
    """Yield (line number, parsed value) for each non-blank line; one-line errors otherwise."""
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise XlvlmError(f"{path}:{line_no}: not UTF-8 text; is this really a JSONL file?")
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise XlvlmError(f"{path}:{line_no}: malformed JSON ({exc.msg}); fix that line")
            except (ValueError, RecursionError) as exc:  # e.g. an integer too long to convert, nesting too deep
                raise XlvlmError(f"{path}:{line_no}: unreadable JSON ({type(exc).__name__}); fix that line")
            yield line_no, value


def read_jsonl(path: str | Path) -> list[dict]:
    """Read samples from a JSONL file.

    Returns a list of dicts; ``id`` is made a string, ``image`` an absolute path string.
    """
    path = Path(path)
    if not path.is_file():
        raise XlvlmError(f"{path}: data file not found")
    samples, seen = [], set()
    for line_no, record in iter_json_lines(path):
        if not isinstance(record, dict):
            raise XlvlmError(f"{path}:{line_no}: expected a JSON object with id, image, prompt")
        missing = [f for f in REQUIRED_FIELDS if f not in record]
        if missing:
            raise XlvlmError(f"{path}:{line_no}: missing field {missing[0]!r}; each line needs id, image, prompt")
        for name in ("image", "prompt"):
            if not isinstance(record[name], str) or not record[name]:
                raise XlvlmError(f"{path}:{line_no}: field {name!r} should be a non-empty string; fix that line")
        if "\x00" in record["image"]:
            raise XlvlmError(f"{path}:{line_no}: field 'image' contains a NUL character; fix that line")
        if isinstance(record["id"], bool) or not isinstance(record["id"], (str, int)) or not str(record["id"]).strip():
            raise XlvlmError(f"{path}:{line_no}: field 'id' should be a non-empty string or a number, not "
                             f"{record['id']!r}; fix that line")
        record["id"] = str(record["id"])
        if record["id"] in seen:
            raise XlvlmError(f"{path}:{line_no}: duplicate id {record['id']!r}; ids must be unique")
        seen.add(record["id"])
        image = Path(str(record["image"]))
        record["image"] = str(image if image.is_absolute() else (path.parent / image).resolve())
        samples.append(record)
    if not samples:
        raise XlvlmError(f"{path}: no samples in file")
    return samples


def write_jsonl(samples, path: str | Path) -> None:
    """Write samples (dicts) as JSONL, atomically."""
    from xlvlm.io import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))


class JsonlAppender:
    """Records written as they come, so that a failure late in a long run keeps what was done.

    They go to ``PATH.partial`` (flushed after every :meth:`write`); :meth:`commit` makes it
    ``PATH`` with one atomic rename. Until then an existing ``PATH`` is left as it was, and if
    the run fails (a full disk, an interrupt) ``PATH.partial`` holds every record written (it is
    removed if there are none).
    Use as a context manager and call :meth:`commit` at the end.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self._handle = open(self.partial, "w", encoding="utf-8")

    def write(self, records) -> None:
        self._handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        self._handle.flush()
        self.count += len(records)

    def commit(self) -> None:
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self.partial, self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if not self._handle.closed:
            try:
                self._handle.close()
            except OSError:  # a full disk may refuse the last flush too; the error in flight says so
                pass
            if self.count == 0:  # failed before any record: nothing worth keeping
                self.partial.unlink(missing_ok=True)
        return False
