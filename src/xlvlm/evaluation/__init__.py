"""Evaluation of predictions: VQA accuracy and targeted steering reports, caption metrics,
POPE hallucination metrics, refusal rates.

``evaluate_predictions(path, task)`` is what ``xlvlm evaluate`` runs; ``format_report``
turns its result into the plain-text tables the CLI prints. All rates are fractions in
[0, 1] in the result and percentages in the tables.
"""

from __future__ import annotations

from pathlib import Path

from xlvlm.choices import EVALUATION_TASKS
from xlvlm.errors import XlvlmError
from xlvlm.evaluation.captions import (
    DEFAULT_WORD_CLASSES, caption_metrics, caption_report, class_word_frequency,
)
from xlvlm.evaluation.pope import pope_answer, pope_report
from xlvlm.evaluation.predictions import read_predictions
from xlvlm.evaluation.ranking import rank_vectors
from xlvlm.evaluation.safety import refusal_phrases, safety_report
from xlvlm.evaluation.vqa import (
    answer_distribution, normalize_answer, targeted_report, vqa_accuracy, vqa_report,
)

__all__ = [
    "evaluate_predictions", "format_report", "read_predictions", "normalize_answer", "vqa_accuracy",
    "vqa_report", "answer_distribution", "targeted_report", "caption_metrics", "caption_report",
    "class_word_frequency", "rank_vectors", "pope_answer", "pope_report", "refusal_phrases", "safety_report",
]

TASKS = EVALUATION_TASKS  # names in xlvlm.choices (light to import, the CLI reads them)


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
    if task not in TASKS:
        raise XlvlmError(f"unknown task {task!r}; use --task vqa, caption, pope or safety")
    predictions = read_predictions(path)
    compared = baseline is None or task == "caption" or (task == "vqa" and source is not None)
    if not compared:
        raise XlvlmError(f"baseline {baseline}: only a targeted report (source and target, --task vqa) or --task "
                         f"caption compares with a baseline; give those, or leave the baseline out")
    baseline_records = None if baseline is None else _same_samples(predictions, read_predictions(baseline), baseline)
    if task in ("pope", "safety"):
        if source is not None or target is not None:
            raise XlvlmError("source/target apply to --task vqa only")
        result = pope_report(predictions, where=str(path)) if task == "pope" else safety_report(predictions)
    elif task == "vqa":
        result = vqa_report(predictions)
        if (source is None) != (target is None):
            raise XlvlmError("a targeted report needs both source and target (e.g. --source yes --target no)")
        if source is not None:
            result["targeted"] = targeted_report(predictions, source, target, baseline=baseline_records)
    else:
        if source is not None or target is not None:
            raise XlvlmError("source/target apply to --task vqa only")
        result = caption_report(predictions, word_classes=word_classes, meteor=meteor, baseline=baseline_records)
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


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _signed_points(value) -> str:
    return "-" if value is None else f"{100 * value:+.1f}"


def _table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    """Columns padded to their widest cell; ``align`` has one ``l`` or ``r`` per column."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def line(cells):
        return "  ".join(str(c).ljust(w) if a == "l" else str(c).rjust(w) for c, w, a in zip(cells, widths, align)).rstrip()

    return [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]


def _top(distribution: list[dict], k: int = 5) -> str:
    return ", ".join(f"{d['answer'] or '(empty)'} {_pct(d['share'])}" for d in distribution[:k])


def _format_vqa(result: dict) -> list[str]:
    lines = [f"VQA accuracy: {result['n']} predictions, {result['n_scored']} with references"]
    rows = [["all", str(result["n"]), _pct(result["accuracy"]), _top(result["answer_distribution"])]]
    for kind, row in result["per_type"].items():
        rows.append([kind, str(row["n"]), _pct(row["accuracy"]), _top(row["answer_distribution"])])
    lines += _table(["answer type", "n", "accuracy", "most common answers"], rows, "lrrl")
    if result.get("accuracy_mean_over_types") is not None and len(result["per_type"]) > 1:
        lines.append(f"mean over answer types (the research code's overall): {_pct(result['accuracy_mean_over_types'])}")
    targeted = result.get("targeted")
    if targeted:
        lines += ["", f"Targeted: {targeted['source']} -> {targeted['target']} "
                      f"({targeted['n_source']} questions with {targeted['source_kind'].replace('_', ' ')} {targeted['source']!r})",
                  f"success {_pct(targeted['success'])} (baseline {_pct(targeted['baseline_success'])})"]
        rows = [[kind, str(r["n"]), _pct(r["accuracy"]), _pct(r["baseline_accuracy"]), _signed_points(r["accuracy_change"]), _pct(r["unchanged"])]
                for kind, r in targeted["side_effects"].items()]
        overall = targeted["side_effects_overall"]
        if overall and len(rows) > 1:
            rows.append(["all others", str(overall["n"]), _pct(overall["accuracy"]), _pct(overall["baseline_accuracy"]),
                         _signed_points(overall["accuracy_change"]), _pct(overall["unchanged"])])
        if rows:
            lines += ["side effects (other answer types):"]
            lines += _table(["answer type", "n", "accuracy", "baseline", "change (points)", "unchanged"], rows, "lrrrrr")
    return lines


def _format_caption(result: dict) -> list[str]:
    metrics = result["metrics"]
    lines = [f"Caption metrics: {result['n']} predictions, {metrics['n_scored']} with reference captions"
             + (f" ({metrics['tokenizer']} tokenizer)" if metrics["tokenizer"] else "")]
    names = ["CIDEr-D", "BLEU-4", "ROUGE-L", "METEOR"]
    lines += _table(names, [["-" if metrics[n] is None else f"{metrics[n]:.3f}" for n in names]], "rrrr")
    lines += ["", "class words in captions (share of captions with one; per caption; most common):"]
    rows = []
    for name, row in result["class_words"].items():
        ref = (result.get("reference_class_words") or {}).get(name)
        base = (result.get("baseline_class_words") or {}).get(name)
        top = ", ".join(f"{w} {c}" for w, c in list(row["counts"].items())[:5])
        rows.append([name, _pct(row["share"]), "-" if row["per_text"] is None else f"{row['per_text']:.2f}",
                     _pct(ref["share"]) if ref else "-", _pct(base["share"]) if base else "-", top])
    lines += _table(["class", "share", "per caption", "references", "baseline", "most common"], rows, "lrrrrl")
    return lines


def _format_pope(result: dict) -> list[str]:
    lines = [f"POPE: {result['n']} predictions (positive = yes; {result['rule']})"]

    def row(name, r):
        return [name, str(r["n"]), _pct(r["accuracy"]), _pct(r["precision"]), _pct(r["recall"]), _pct(r["f1"]),
                _pct(r["yes_ratio"]), _pct(r["label_yes_ratio"])]

    rows = [row(split, r) for split, r in result["per_split"].items()] + [row("all", result["overall"])]
    return lines + _table(["split", "n", "accuracy", "precision", "recall", "F1", "yes-ratio", "labels yes"], rows,
                          "lrrrrrrr")


def _format_safety(result: dict) -> list[str]:
    lines = [f"Refusal rate: {result['n']} predictions, {result['refusals']} refuse or warn "
             f"({len(result['phrases'])} phrases, see docs/hallucination.md)"]
    rows = [[name, str(r["n"]), _pct(r["refusal_rate"])] for name, r in result["per_scenario"].items()]
    rows.append(["all", str(result["n"]), _pct(result["refusal_rate"])])
    lines += _table(["scenario", "n", "refusal rate"], rows, "lrr")
    if result["phrase_counts"]:
        lines.append("most matched: " + ", ".join(f"{p!r} {c}" for p, c in list(result["phrase_counts"].items())[:5]))
    return lines


def format_report(result: dict) -> str:
    """A plain-text table of an :func:`evaluate_predictions` result (notes at the end)."""
    task = result.get("task")
    if task == "vqa":
        lines = _format_vqa(result)
        notes = result.get("notes", [])
    elif task == "caption":
        lines = _format_caption(result)
        notes = result["metrics"].get("notes", [])
    elif task in ("pope", "safety"):
        lines = _format_pope(result) if task == "pope" else _format_safety(result)
        notes = result.get("notes", [])
    else:
        raise XlvlmError(f"format_report: unknown result task {task!r}; pass what evaluate_predictions returned")
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines) + "\n"
