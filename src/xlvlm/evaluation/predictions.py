"""Prediction files: JSONL, one ``{"id", "prediction", ...sample fields}`` per line.

``xlvlm steer apply`` (and generation in ``xlvlm extract``) write them with the sample's own
fields copied in, so the references (``answer``, ``answers``, ``answer_type``, ``captions``)
travel with each prediction.
"""

from __future__ import annotations

from pathlib import Path

from xlvlm.data.jsonl import iter_json_lines
from xlvlm.errors import XlvlmError


def read_predictions(path: str | Path) -> list[dict]:
    """Read a predictions JSONL file; ``id`` becomes a string, ``prediction`` must be a string."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise XlvlmError(f"{path}: predictions file not found")
    records, seen = [], set()
    for line_no, record in iter_json_lines(path):
        records.append(_checked(record, f"{path}:{line_no}", seen))
    if not records:
        raise XlvlmError(f"{path}: no predictions in file")
    return records


def _checked(record, where: str, seen: set) -> dict:
    if not isinstance(record, dict):
        raise XlvlmError(f"{where}: expected a JSON object with 'id' and 'prediction'")
    for name in ("id", "prediction"):
        if name not in record:
            raise XlvlmError(f"{where}: missing field {name!r}; each prediction needs 'id' and 'prediction'")
    if not isinstance(record["prediction"], str):
        raise XlvlmError(f"{where}: field 'prediction' should be a string, got {type(record['prediction']).__name__}")
    record = dict(record, id=str(record["id"]))
    if record["id"] in seen:
        raise XlvlmError(f"{where}: duplicate id {record['id']!r}; ids must be unique")
    seen.add(record["id"])
    return record


def as_predictions(predictions, what: str = "predictions") -> list[dict]:
    """A path is read with :func:`read_predictions`; a list of dicts is checked the same way."""
    if isinstance(predictions, (str, Path)):
        return read_predictions(predictions)
    seen: set = set()
    records = [_checked(r, f"{what}[{i}]", seen) for i, r in enumerate(predictions)]
    if not records:
        raise XlvlmError(f"{what}: no predictions given")
    return records
