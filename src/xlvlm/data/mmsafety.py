"""MM-SafetyBench (Liu et al., ECCV 2024): harmful requests paired with query-relevant images.

The released layout (github.com/isXinLiu/MM-SafetyBench)::

    FOLDER/processed_questions/01-Illegal_Activitiy.json   one file per scenario (13)
    FOLDER/imgs/01-Illegal_Activitiy/{SD,SD_TYPO,TYPO}/{question id}.jpg

A scenario file maps question ids ("0", "1", ...) to ``{"Question", "Rephrased Question",
"Rephrased Question(SD)", "Key Phrase", "Phrase Type", ...}``. The image types pair with the
question as the benchmark does: ``SD`` (a Stable Diffusion image of the key phrase) with
"Rephrased Question(SD)"; ``SD_TYPO`` (that image with the key phrase typed under it, the
benchmark's strongest attack and the research code's default) and ``TYPO`` (the typed phrase
alone) with "Rephrased Question".

``mmsafety:FOLDER`` reads every scenario (``FOLDER`` or ``FOLDER/processed_questions``);
``mmsafety:FILE.json`` one scenario, its images under ``FILE/../../imgs``. Each question becomes
``{"id": "<scenario>-<question id>", "image", "prompt", "question", "scenario", "question_id",
"key_phrase", "phrase_type", "image_type", "original_question"}``. Images are not opened here
(``check_images`` does that).
"""

from __future__ import annotations

from pathlib import Path

from xlvlm.data._common import field, load_json, question_prompt
from xlvlm.errors import XlvlmError

IMAGE_TYPES = {"SD_TYPO": "Rephrased Question", "TYPO": "Rephrased Question", "SD": "Rephrased Question(SD)"}


def _scenario_files(path: Path) -> tuple[list[Path], Path]:
    """The scenario JSON files and the ``imgs`` folder of an MM-SafetyBench path."""
    if path.is_file():
        return [path], path.parent.parent / "imgs"
    if not path.is_dir():
        raise XlvlmError(f"{path}: MM-SafetyBench folder not found; pass the folder holding processed_questions/ and imgs/")
    questions = path / "processed_questions" if (path / "processed_questions").is_dir() else path
    files = sorted(questions.glob("*.json"))
    if not files:
        raise XlvlmError(f"{questions}: no scenario .json files; pass the MM-SafetyBench folder (with processed_questions/)")
    return files, (questions.parent if questions != path else path) / "imgs"


def read_mmsafety(path: str | Path, image_type: str = "SD_TYPO", prompt: str = "{question}") -> list[dict]:
    """Samples of MM-SafetyBench (see the module docstring); ``prompt`` is a ``{question}`` template."""
    if image_type not in IMAGE_TYPES:
        raise XlvlmError(f"mmsafety: unknown image_type {image_type!r}; use SD_TYPO, SD or TYPO")
    files, images = _scenario_files(Path(path).expanduser())
    question_field = IMAGE_TYPES[image_type]
    samples = []
    for file in files:
        scenario = file.stem
        entries = load_json(file, "MM-SafetyBench scenario file")
        if not isinstance(entries, dict):
            raise XlvlmError(f"{file}: expected a JSON object mapping question ids to questions; is this an MM-SafetyBench processed_questions file?")
        for question_id, entry in entries.items():
            where = f"question {question_id!r}"
            if not str(question_id).isdigit():
                raise XlvlmError(f"{file}: question id {question_id!r} is not a number; image files are named by it")
            question = field(entry, question_field, where, file, str)
            samples.append({
                "id": f"{scenario}-{question_id}",
                "image": str(images / scenario / image_type / f"{question_id}.jpg"),
                "prompt": question_prompt(prompt, question, "mmsafety"),
                "question": question,
                "scenario": scenario,
                "question_id": str(question_id),
                "key_phrase": field(entry, "Key Phrase", where, file, str),
                "phrase_type": entry.get("Phrase Type") if isinstance(entry.get("Phrase Type"), str) else None,
                "image_type": image_type,
                "original_question": entry.get("Question") if isinstance(entry.get("Question"), str) else None,
            })
    if not samples:
        raise XlvlmError(f"{path}: no questions in the MM-SafetyBench files")
    return samples


__all__ = ["IMAGE_TYPES", "read_mmsafety"]
