"""Column maps: which column of a table (a Hugging Face dataset) holds each field of a sample.

A map is ``{field: column}`` (``--columns image=img,prompt=question,id=question_id``). The
fields with a meaning:

- ``id``: a string or an int (made a string); without it, the row number in the split;
- ``image``: image bytes (``{"bytes", "path"}`` structs, an ``Image`` feature, raw bytes) or a
  path (resolved against the image root, else the data's folder);
- ``prompt``: the question; the sample's ``prompt`` is the ``{question}`` template filled with
  it, its ``question`` the text itself. Without it every sample gets the (caption) prompt;
- ``answer``: the reference answer (a string);
- ``answers``: a list of answers (VQAv2's ``[{"answer", ...}]`` become their strings);
- ``captions``: a list of reference captions; the first is also the ``answer``;
- ``label``: ``yes`` or ``no`` (POPE): also the ``answer``, with ``answer_type`` ``yes/no``.

Any other field is copied as the column holds it (``split=category``).

Presets name the columns of the schemas benchmarks are distributed in (``PRESETS``); a
``--columns`` map given with a preset replaces the preset's entries it names.
"""

from __future__ import annotations

from xlvlm.data._common import DEFAULT_CAPTION_PROMPT, question_prompt
from xlvlm.errors import XlvlmError

PRESETS: dict[str, dict[str, str]] = {
    # lmms-lab/POPE (lmms-eval's pope tasks): question_id counts within each category, id is unique.
    "pope": {"id": "id", "image": "image", "prompt": "question", "label": "answer", "split": "category"},
    # lmms-lab/VQAv2 (lmms-eval's vqav2 tasks).
    "vqav2": {"id": "question_id", "image": "image", "prompt": "question", "answer": "multiple_choice_answer",
              "answers": "answers", "answer_type": "answer_type", "question_type": "question_type",
              "image_id": "image_id"},
    # yerevann/coco-karpathy (lmms-eval's coco_karpathy tasks), with the images in an ``image`` column;
    # that dataset links them by URL: map ``image=filename`` and give the image root instead.
    "coco-karpathy": {"id": "cocoid", "image": "image", "captions": "sentences", "split": "split"},
}

# Without a preset or --columns: these columns, where the data has them.
DEFAULT_COLUMNS = {"id": ("id", "question_id"), "image": ("image",), "prompt": ("prompt", "question"),
                   "answer": ("answer",)}


def parse_columns(text) -> dict[str, str]:
    """``"image=img,prompt=question"`` (or a dict) as ``{field: column}``; one-line errors."""
    if isinstance(text, dict):
        pairs = list(text.items())
    else:
        pairs = []
        for part in str(text).split(","):
            if not part.strip():
                continue
            field, sep, column = part.partition("=")
            if not sep:
                raise XlvlmError(f"columns: {part.strip()!r} is not FIELD=COLUMN; write e.g. image=img,prompt=question")
            pairs.append((field, column))
    columns = {}
    for field, column in pairs:
        field, column = str(field).strip(), str(column).strip()
        if not field or not column:
            raise XlvlmError(f"columns: {field or '?'}={column or '?'} needs a field and a column name")
        if field in columns:
            raise XlvlmError(f"columns: field {field!r} is mapped twice")
        columns[field] = column
    return columns


def column_map(available: list[str], columns=None, preset: str | None = None, what: str = "data") -> dict[str, str]:
    """The ``{field: column}`` map for a table with the ``available`` columns: the preset's,
    with ``columns`` over it, or the default columns found. A named column that the table lacks
    is a one-line error naming ``what`` and listing the columns it has."""
    if preset is not None and preset not in PRESETS:
        raise XlvlmError(f"preset {preset!r} is unknown; use one of {', '.join(PRESETS)}")
    given = dict(PRESETS[preset]) if preset else {}
    given.update(parse_columns(columns) if columns else {})
    if not given:
        given = {field: next(c for c in names if c in available)
                 for field, names in DEFAULT_COLUMNS.items() if any(c in available for c in names)}
    for field, column in given.items():
        if column not in available:
            how = f"preset {preset!r} expects it" if preset and PRESETS[preset].get(field) == column else "map another"
            raise XlvlmError(f"{what}: no column {column!r} for field {field!r} (it has {', '.join(available)}); "
                             f"{how}: --columns {field}=COLUMN")
    if "image" not in given:
        raise XlvlmError(f"{what}: no image column (it has {', '.join(available)}); name it: --columns image=COLUMN")
    return given


def _text(value, field: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise XlvlmError(f"{where}: field {field!r} should be a non-empty string, got {_preview(value)}; fix the data "
                         f"or map another column")
    if "\x00" in value:
        raise XlvlmError(f"{where}: field {field!r} contains a NUL character; fix the data")
    return value


def _preview(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _strings(value, field: str, where: str) -> list[str]:
    if not isinstance(value, (list, tuple)):
        raise XlvlmError(f"{where}: field {field!r} should be a list, got {_preview(value)}; map another column")
    return [str(v["answer"]) if isinstance(v, dict) and "answer" in v else str(v) for v in value]


def row_sample(row: dict, columns: dict[str, str], row_index: int, where: str, prompt: str | None) -> dict:
    """One sample from a table row (``image`` left out: the caller adds it). ``prompt``: the
    ``{question}`` template when a question column is mapped, else the prompt of every sample."""
    sample: dict = {}
    if "id" in columns:
        value = row[columns["id"]]
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
            raise XlvlmError(f"{where}: field 'id' should be a non-empty string or a number, got {_preview(value)}; "
                             f"fix the data or map another column")
        sample["id"] = str(value)
    else:
        sample["id"] = str(row_index)
    if "prompt" in columns:
        question = _text(row[columns["prompt"]], "prompt", where)
        sample["prompt"] = question_prompt(prompt or "{question}", question, "hf")
        sample["question"] = question
    else:
        sample["prompt"] = prompt or DEFAULT_CAPTION_PROMPT
    for field, column in columns.items():
        if field in ("id", "image", "prompt"):
            continue
        value = row[column]
        if field == "answer":
            sample["answer"] = _text(value, field, where)
        elif field in ("answers", "captions"):
            sample[field] = _strings(value, field, where)
        elif field == "label":
            label = value.strip().lower() if isinstance(value, str) else value
            if label not in ("yes", "no"):
                raise XlvlmError(f"{where}: field 'label' should be 'yes' or 'no', got {_preview(value)}; fix the data")
            sample["label"] = label
        else:
            sample[field] = value
    if "answer" not in sample and sample.get("captions"):
        sample["answer"] = sample["captions"][0]
    if "label" in sample:
        sample.setdefault("answer", sample["label"])
        sample.setdefault("answer_type", "yes/no")
    return sample
