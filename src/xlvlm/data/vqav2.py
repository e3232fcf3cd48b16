"""VQAv2 from the official files: a questions JSON and (except for test) an annotations JSON.

Questions: ``{"data_subtype": "val2014", "questions": [{"question_id", "image_id",
"question"}, ...]}``. Annotations: ``{"annotations": [{"question_id", "answers":
[{"answer": ...}, x10], "multiple_choice_answer", "answer_type", "question_type"}, ...]}``.

The image of a question is ``COCO_{images}_{image_id:012d}.jpg`` under ``image_root``, where
``{images}`` is the split's image set (``train2014``, ``val2014``, ``test2015`` for both
test and test-dev). If ``image_root`` holds a sub-folder named after that image set, the
images are looked for there.

Each question becomes one sample: ``{"id": str(question_id), "image", "prompt",
"question", "image_id"}`` plus, with annotations, ``"answer"`` (the
``multiple_choice_answer``), ``"answers"`` (the 10 annotators' answers, in order),
``"answer_type"`` (``yes/no``, ``number``, ``other``) and ``"question_type"``.
"""

from __future__ import annotations

import re
from pathlib import Path

from xlvlm.data._common import field, image_root_dir, load_json, question_prompt
from xlvlm.errors import XlvlmError

_SPLITS = {"train": "train2014", "val": "val2014", "test": "test2015", "test-dev": "test-dev2015"}
_SPLIT_PATTERN = re.compile(r"(test-dev|train|val|test)(20\d\d)")


def vqav2_split(split: str | None, questions_path: Path, questions_json: dict) -> str:
    """The full split name (``val2014``...): given, else the file's ``data_subtype``, else its name."""
    if split is None:
        subtype = questions_json.get("data_subtype")
        if isinstance(subtype, str) and _SPLIT_PATTERN.fullmatch(subtype):
            return subtype
        found = _SPLIT_PATTERN.search(questions_path.name)
        if found is None:
            raise XlvlmError(f"{questions_path}: cannot tell the split (no 'data_subtype', no split in the file name); pass split=val2014 or similar")
        return found.group(0)
    split = _SPLITS.get(split, split)
    if not _SPLIT_PATTERN.fullmatch(split):
        raise XlvlmError(f"vqav2: unknown split {split!r}; use train, val, test, test-dev or a full name like val2014")
    return split


def read_vqav2(
    questions: str | Path,
    annotations: str | Path | None = None,
    image_root: str | Path | None = None,
    split: str | None = None,
    prompt: str = "{question}",
) -> list[dict]:
    """Samples of the official VQAv2 files; ``prompt`` is a template containing ``{question}``."""
    questions_path = Path(questions).expanduser()
    root = image_root_dir(image_root, "VQAv2")
    questions_json = load_json(questions_path, "VQAv2 questions file")
    entries = field(questions_json, "questions", "the top level", questions_path, list)
    subtype = vqav2_split(split, questions_path, questions_json)
    image_set = subtype.replace("test-dev", "test")
    folder = root / image_set if (root / image_set).is_dir() else root

    by_question = None
    if annotations is not None:
        annotations_path = Path(annotations).expanduser()
        annotations_json = load_json(annotations_path, "VQAv2 annotations file")
        by_question = {}
        for i, ann in enumerate(field(annotations_json, "annotations", "the top level", annotations_path, list)):
            where = f"annotations[{i}]"
            question_id = field(ann, "question_id", where, annotations_path, (int, str))
            answers = field(ann, "answers", where, annotations_path, list)
            by_question[str(question_id)] = {
                "answer": field(ann, "multiple_choice_answer", where, annotations_path, str),
                "answers": [field(a, "answer", f"{where}.answers[{j}]", annotations_path, str) for j, a in enumerate(answers)],
                "answer_type": field(ann, "answer_type", where, annotations_path, str),
                **({"question_type": ann["question_type"]} if isinstance(ann.get("question_type"), str) else {}),
            }

    samples, seen = [], set()
    for i, entry in enumerate(entries):
        where = f"questions[{i}]"
        question_id = str(field(entry, "question_id", where, questions_path, (int, str)))
        image_id = field(entry, "image_id", where, questions_path, int)
        question = field(entry, "question", where, questions_path, str)
        if question_id in seen:
            raise XlvlmError(f"{questions_path}: {where} repeats question_id {question_id}; ids must be unique")
        seen.add(question_id)
        sample = {
            "id": question_id,
            "image": str(folder / f"COCO_{image_set}_{image_id:012d}.jpg"),
            "prompt": question_prompt(prompt, question, "vqav2"),
            "question": question,
            "image_id": image_id,
        }
        if by_question is not None:
            if question_id not in by_question:
                raise XlvlmError(f"{annotations_path}: no annotation for question_id {question_id}; pass the annotations file of the same split")
            sample.update(by_question[question_id])
        samples.append(sample)
    if not samples:
        raise XlvlmError(f"{questions_path}: no questions in file")
    return samples
