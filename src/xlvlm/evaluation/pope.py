"""POPE metrics: how often a model says an object is there, and how often it is right.

Each prediction is read as "yes" or "no" by the rule of the official POPE evaluation
(RUCAIBox/POPE ``evaluate.py``, copied by LLaVA's ``eval_pope.py``), :func:`pope_answer`:

1. keep the text before the first period ("No. There is a dog." -> "No");
2. delete commas;
3. split into words; the answer is "no" when a word is exactly ``No``, ``no`` or ``not``, and
   "yes" otherwise (also for an empty or off-topic answer, so a model that rambles counts as
   saying yes).

One difference, on purpose: the official script splits on single spaces, so ``"no\\n"`` would
count as "yes"; here any whitespace separates words. Case is kept as the official script keeps
it ("NO" and "Not" count as "yes" there and here), so the numbers compare with published ones.

The positive class is "yes" (the object is there). With TP, FP, TN, FN counted over
predictions against labels:

- accuracy = (TP + TN) / n
- precision = TP / (TP + FP)   (None when nothing is answered "yes")
- recall = TP / (TP + FN)      (None when no label is "yes")
- F1 = 2 TP / (2 TP + FP + FN)  (the harmonic mean of precision and recall where both exist)
- yes-ratio = (TP + FP) / n, the share of "yes" answers; ``label_yes_ratio`` the share of
  "yes" labels (0.5 on POPE), the value an unbiased model's yes-ratio approaches.

They are reported overall and per ``split`` (random, popular, adversarial) when predictions
carry one. The reference of a prediction is its ``label`` field, else its ``answer``.
"""

from __future__ import annotations

from pathlib import Path

from xlvlm.errors import XlvlmError
from xlvlm.evaluation.predictions import as_predictions

NO_WORDS = frozenset({"No", "no", "not"})
RULE = ("first sentence, commas removed; 'no' when a word is No, no or not, else 'yes' "
        "(the official POPE evaluation; words split on any whitespace)")


def pope_answer(text: str) -> str:
    """``"yes"`` or ``"no"``: how the official POPE evaluation reads a model's answer."""
    first = text.split(".", 1)[0].replace(",", "")
    return "no" if NO_WORDS.intersection(first.split()) else "yes"


def _label(record: dict, index: int, where: str) -> str:
    value = record.get("label", record.get("answer"))
    if not isinstance(value, str) or value.strip().lower() not in ("yes", "no"):
        raise XlvlmError(f"{where}: prediction {record.get('id', index)!r} (record {index + 1}) needs a 'label' (or 'answer') of yes or no, "
                         f"got {value!r}; score POPE predictions of POPE samples")
    return value.strip().lower()


def pope_scores(labels: list[str], answers: list[str]) -> dict:
    """Counts and rates of ``answers`` ("yes"/"no") against ``labels`` (see the module docstring)."""
    if not labels:
        raise XlvlmError("pope_scores: no predictions")
    tp = sum(a == "yes" and y == "yes" for a, y in zip(answers, labels))
    fp = sum(a == "yes" and y == "no" for a, y in zip(answers, labels))
    tn = sum(a == "no" and y == "no" for a, y in zip(answers, labels))
    fn = sum(a == "no" and y == "yes" for a, y in zip(answers, labels))
    n = len(labels)
    return {
        "n": n, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "accuracy": (tp + tn) / n,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        "yes_ratio": (tp + fp) / n,
        "label_yes_ratio": (tp + fn) / n,
    }


def pope_report(predictions, where: str | None = None) -> dict:
    """POPE metrics of predictions (a path or dicts with ``prediction`` and ``label``/``answer``,
    optionally ``split``): ``{"task": "pope", "n", "rule", "overall", "per_split"}``. Errors name
    ``where`` (default: the path, when one is given)."""
    records = as_predictions(predictions)
    if where is None:
        where = str(predictions) if isinstance(predictions, (str, Path)) else "predictions"
    labels = [_label(r, i, where) for i, r in enumerate(records)]
    answers = [pope_answer(r["prediction"]) for r in records]
    per_split = {}
    splits = [r.get("split") for r in records]
    for i, split in enumerate(splits):
        if split is not None and not isinstance(split, str):
            raise XlvlmError(f"{where}: prediction {records[i]['id'][:80]!r} (record {i + 1}) has a 'split' of "
                             f"{type(split).__name__} {str(split)[:40]}; a split is a name (a string) such as "
                             f"random, popular, adversarial")
    for split in dict.fromkeys(s for s in splits if s is not None):
        rows = [i for i, s in enumerate(splits) if s == split]
        per_split[split] = pope_scores([labels[i] for i in rows], [answers[i] for i in rows])
    notes = []
    if per_split and None in splits:
        notes.append(f"{splits.count(None)} predictions have no split; they count in 'all' only")
    return {"task": "pope", "n": len(records), "rule": RULE, "overall": pope_scores(labels, answers),
            "per_split": per_split, "notes": notes}


__all__ = ["pope_answer", "pope_scores", "pope_report", "RULE"]
