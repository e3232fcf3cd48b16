"""POPE object-hallucination questions: "Is there a {object} in the image?" with yes/no labels.

Two line-per-record forms are read (each line one JSON object; the official files are named
``.json`` but hold one object a line):

- the official files (github.com/RUCAIBox/POPE, ``output/coco/coco_pope_{random,popular,
  adversarial}.json``, also ``aokvqa_``/``gqa_`` ones and ``..._pope_seem_random.json``):
  ``{"question_id": 1, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a
  snowboard in the image?", "label": "yes"}``, one file per split; the split comes from the
  file name (``..._pope_random.json``) or the ``split`` option; image names are joined to
  ``image_root``;
- JSONL: ``{"id"?, "image", "question" | "prompt", "label": "yes" | "no", "split"?:
  "random" | "popular" | "adversarial", ...}``; relative image paths are resolved against
  ``image_root`` when given, else the file's folder (as :func:`~xlvlm.data.jsonl.read_jsonl`).

A folder reads every ``*pope_[*_]{random,popular,adversarial}.json[l]`` file in it.

Each record becomes one sample ``{"id", "image", "prompt", "question", "label", "answer"
(= label, so VQA scoring works too), "answer_type": "yes/no", "split"?, ...other fields}``. The
id is the record's ``id``, else ``{split}-{question_id}`` (the official files number each split
from 1), else ``{file stem}-{line}``. ``prompt`` is a ``{question}`` template (e.g. LLaVA's
``"{question} Answer the question using a single word or phrase."``).
"""

from __future__ import annotations

import re
from pathlib import Path

from xlvlm.data._common import question_prompt
from xlvlm.data.jsonl import iter_json_lines
from xlvlm.errors import XlvlmError

POPE_SPLITS = ("random", "popular", "adversarial")
LABELS = ("yes", "no")
_SPLIT_IN_NAME = re.compile(r"pope_(?:\w+_)?(random|popular|adversarial)\.jsonl?$")


def pope_files(path: Path) -> list[Path]:
    """``path`` itself, or the POPE split files in the folder ``path`` (sorted by name)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if _SPLIT_IN_NAME.search(p.name))
        if not files:
            raise XlvlmError(f"{path}: no POPE files (*_pope_random|popular|adversarial.json) in this folder")
        return files
    if not path.is_file():
        raise XlvlmError(f"{path}: POPE file not found; check the path")
    return [path]


def _text(record: dict, names: tuple[str, ...], where: str) -> str:
    name = next((n for n in names if n in record), None)
    if name is None:
        raise XlvlmError(f"{where}: missing field {names[0]!r} (or {' / '.join(repr(n) for n in names[1:])}); fix that line")
    value = record[name]
    if not isinstance(value, str) or not value.strip():
        raise XlvlmError(f"{where}: field {name!r} should be a non-empty string; fix that line")
    if "\x00" in value:
        raise XlvlmError(f"{where}: field {name!r} contains a NUL character; fix that line")
    return value


def read_pope(path: str | Path, image_root: str | Path | None = None, split: str | None = None,
              prompt: str = "{question}") -> list[dict]:
    """Samples of a POPE file or folder (see the module docstring for the forms)."""
    if split is not None and split not in POPE_SPLITS:
        raise XlvlmError(f"pope: unknown split {split!r}; use random, popular or adversarial")
    root = None
    if image_root is not None:
        root = Path(image_root).expanduser()
        if not root.is_dir():
            raise XlvlmError(f"{root}: image_root folder not found; pass the folder holding the POPE images (e.g. COCO val2014)")
        root = root.resolve()
    samples, seen = [], set()
    for file in pope_files(Path(path).expanduser()):
        named = _SPLIT_IN_NAME.search(file.name)
        file_split = split or (named.group(1) if named else None)
        for line_no, record in iter_json_lines(file):
            where = f"{file}:{line_no}"
            sample = _sample(record, where, file, line_no, file_split, root, prompt)
            if sample["id"] in seen:
                raise XlvlmError(f"{where}: duplicate id {sample['id']!r}; ids must be unique")
            seen.add(sample["id"])
            samples.append(sample)
    if not samples:
        raise XlvlmError(f"{path}: no POPE questions in file")
    return samples


def _sample(record, where: str, file: Path, line_no: int, file_split: str | None, root: Path | None,
            prompt: str) -> dict:
    if not isinstance(record, dict):
        raise XlvlmError(f"{where}: expected a JSON object with image, question (or text) and label")
    image = _text(record, ("image",), where)
    question = _text(record, ("question", "text", "prompt"), where)
    label = record.get("label")
    if label is None:
        raise XlvlmError(f"{where}: missing field 'label'; each POPE question needs label yes or no")
    if not isinstance(label, str) or label.strip().lower() not in LABELS:
        raise XlvlmError(f"{where}: field 'label' should be 'yes' or 'no', got {label!r}; fix that line")
    label = label.strip().lower()
    sample_split = record.get("split", file_split)
    if sample_split is not None and sample_split not in POPE_SPLITS:
        raise XlvlmError(f"{where}: field 'split' should be random, popular or adversarial, got {sample_split!r}")
    if "id" in record:
        sample_id = str(record["id"])
    elif "question_id" in record:
        sample_id = f"{sample_split}-{record['question_id']}" if sample_split else str(record["question_id"])
    else:
        sample_id = f"{file.stem}-{line_no}"
    image_path = Path(image)
    if not image_path.is_absolute():
        image_path = ((root or file.parent) / image_path).resolve()
    sample = {k: v for k, v in record.items() if k not in ("text",)}
    sample.update({
        "id": sample_id, "image": str(image_path), "prompt": question_prompt(prompt, question, "pope"),
        "question": question, "label": label, "answer": label, "answer_type": "yes/no",
    })
    if sample_split is not None:
        sample["split"] = sample_split
    return sample


__all__ = ["POPE_SPLITS", "read_pope"]
