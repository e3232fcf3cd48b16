"""The evaluation tasks by name: how each scores a predictions file and prints its result.

:data:`TASKS` is the registry ``xlvlm evaluate --task`` reads its choices from (this package
imports neither torch nor transformers). A new metric: its module (a ``*_report`` function and a
table in :mod:`xlvlm.evaluation.tables`) and one :func:`register_task` line below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xlvlm.errors import XlvlmError
from xlvlm.evaluation import tables
from xlvlm.evaluation.captions import DEFAULT_WORD_CLASSES, caption_report
from xlvlm.evaluation.pope import pope_report
from xlvlm.evaluation.safety import safety_report
from xlvlm.evaluation.vqa import targeted_report, vqa_report


@dataclass(frozen=True)
class Options:
    """What ``evaluate_predictions`` passes on to a task besides the predictions."""

    path: Path | str
    baseline: Path | str | None = None
    source: str | None = None
    target: str | None = None
    word_classes: object = DEFAULT_WORD_CLASSES
    meteor: bool = True


@dataclass(frozen=True)
class Task:
    """One task. score(predictions, options) -> its result dict (with ``"task": name``);
    table(result) -> the lines ``format_report`` prints; notes(result) -> the notes printed under
    them. targeted: the task takes ``source``/``target`` (refused for the others). uses_baseline:
    whether the task compares with the baseline predictions under these options."""

    name: str
    score: Callable[[list[dict], Options], dict]
    table: Callable[[dict], list[str]]
    notes: Callable[[dict], list[str]] = lambda result: result.get("notes", [])
    targeted: bool = False
    uses_baseline: Callable[[Options], bool] = lambda options: False  # a baseline given otherwise is refused


#: name -> Task, in the order ``--help`` lists them.
TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The task called ``name``, or an XlvlmError listing the known ones."""
    if name not in TASKS:
        names = list(TASKS)
        raise XlvlmError(f"unknown task {name!r}; use --task {', '.join(names[:-1])} or {names[-1]}")
    return TASKS[name]


def _score_vqa(predictions: list[dict], options: Options) -> dict:
    result = vqa_report(predictions)
    if (options.source is None) != (options.target is None):
        raise XlvlmError("a targeted report needs both source and target (e.g. --source yes --target no)")
    if options.source is not None:
        result["targeted"] = targeted_report(predictions, options.source, options.target, baseline=options.baseline)
    return result


def _score_caption(predictions: list[dict], options: Options) -> dict:
    return caption_report(predictions, word_classes=options.word_classes, meteor=options.meteor,
                          baseline=options.baseline)


register_task(Task("vqa", _score_vqa, tables.format_vqa, targeted=True,
                   uses_baseline=lambda options: options.source is not None))
register_task(Task("caption", _score_caption, tables.format_caption,
                   notes=lambda result: result["metrics"].get("notes", []), uses_baseline=lambda options: True))
register_task(Task("pope", lambda predictions, options: pope_report(predictions, where=str(options.path)),
                   tables.format_pope))
register_task(Task("safety", lambda predictions, options: safety_report(predictions), tables.format_safety))
