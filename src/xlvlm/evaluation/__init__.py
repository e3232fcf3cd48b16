"""Evaluation of predictions: VQA accuracy and targeted steering reports, caption metrics,
POPE hallucination metrics, refusal rates.

``evaluate_predictions(path, task)`` is what ``xlvlm evaluate`` runs; ``format_report``
turns its result into the plain-text tables the CLI prints. All rates are fractions in
[0, 1] in the result and percentages in the tables.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from xlvlm.errors import XlvlmError
from xlvlm.evaluation.captions import (
    DEFAULT_WORD_CLASSES, caption_metrics, caption_report, class_word_frequency,
)
from xlvlm.evaluation.pope import pope_answer, pope_report
from xlvlm.evaluation.predictions import read_predictions
from xlvlm.evaluation.ranking import rank_vectors
from xlvlm.evaluation.safety import refusal_phrases, safety_report
from xlvlm.evaluation.tasks import TASKS, Options, Task, get_task, register_task
from xlvlm.evaluation.vqa import (
    answer_distribution, normalize_answer, targeted_report, token_of_interest_accuracy, vqa_accuracy, vqa_report,
)

__all__ = [
    "evaluate_predictions", "format_report", "read_predictions", "normalize_answer", "vqa_accuracy",
    "vqa_report", "answer_distribution", "targeted_report", "token_of_interest_accuracy", "caption_metrics", "caption_report",
    "class_word_frequency", "rank_vectors", "pope_answer", "pope_report", "refusal_phrases", "safety_report",
    "TASKS", "Task", "register_task",
]


def evaluate_predictions(
    path: str | Path,
    task: str = "vqa",
    *,
    baseline: str | Path | None = None,
    source: str | None = None,
    target: str | None = None,
    word_classes=DEFAULT_WORD_CLASSES,
    meteor: bool = True,
) -> dict:
    """Evaluate a predictions JSONL file (``{"id", "prediction", ...sample fields}`` per line).

    ``task="vqa"``: :func:`vqa_report` (accuracy overall and per answer type, answer
    distributions); with ``source`` and ``target`` also ``"targeted"``:
    :func:`targeted_report` against the ``baseline`` predictions when given.
    ``task="caption"``: :func:`caption_report` (CIDEr-D, BLEU-4, ROUGE-L, METEOR, class-word
    frequencies of ``word_classes``, also of the ``baseline`` when given).
    ``task="pope"``: :func:`pope_report` (accuracy, precision, recall, F1, yes-ratio, per split).
    ``task="safety"``: :func:`safety_report` (refusal rate, per scenario).
    The result carries ``"predictions"`` (the path) and, when given, ``"baseline"``.
    """
    chosen = get_task(task)
    predictions = read_predictions(path)
    if not chosen.targeted and (source is not None or target is not None):
        raise XlvlmError(f"source/target apply to --task {', '.join(n for n, t in TASKS.items() if t.targeted)} only")
    options = Options(path, baseline, source, target, word_classes, meteor)
    if baseline is not None and not chosen.uses_baseline(options):
        raise XlvlmError(f"baseline {baseline}: only a targeted report (source and target, --task vqa) or --task "
                         f"caption compares with a baseline; give those, or leave the baseline out")
    if baseline is not None:
        options = replace(options, baseline=_same_samples(predictions, read_predictions(baseline), baseline))
    result = chosen.score(predictions, options)
    result["predictions"] = str(path)
    if baseline is not None:
        result["baseline"] = str(baseline)
    return result


def _same_samples(predictions: list[dict], baseline: list[dict], path) -> list[dict]:
    """The baseline's records, when they cover every prediction's id (the same samples, unsteered)."""
    ids = {r["id"] for r in baseline}
    missing = [r["id"] for r in predictions if r["id"] not in ids]
    if missing:
        raise XlvlmError(f"{path}: no baseline prediction for id {missing[0][:80]!r} ({len(missing)} of "
                         f"{len(predictions)} missing); use the baseline run on the same samples")
    return baseline


def format_report(result: dict) -> str:
    """A plain-text table of an :func:`evaluate_predictions` result (notes at the end)."""
    task = TASKS.get(result.get("task"))
    if task is None:
        raise XlvlmError(f"format_report: unknown result task {result.get('task')!r}; pass what evaluate_predictions "
                         f"returned")
    lines = task.table(result) + [f"note: {n}" for n in task.notes(result)]
    return "\n".join(lines) + "\n"
