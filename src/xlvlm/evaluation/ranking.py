"""Ranking candidate steering results by how consistently they move answers to one target.

For each candidate (the predictions of one steered run: a vector, a layer, an alpha...),
compared with the ``baseline`` predictions of the unsteered model on the same ids, after
VQA answer normalisation (:func:`xlvlm.evaluation.vqa.normalize_answer`):

- ``n``: number of ids scored (those of the candidate; every one must be in the baseline).
- ``share_changed``: fraction of the ``n`` predictions that differ from the baseline.
- ``target``: the most common new answer among the changed predictions (ties: the
  alphabetically first), or the ``target`` given by the caller.
- ``consistency``: fraction of the changed predictions that equal ``target``.
- ``score = consistency * share_changed``, which is the fraction of all ``n`` predictions
  that the candidate moved onto ``target``. It is 1 when every answer moves to one answer,
  0 when nothing changes, and low for a candidate that scatters answers.

This is the research code's top-k selection of steering vectors made explicit: candidates
are sorted by ``score`` (then by name), highest first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from xlvlm.errors import XlvlmError
from xlvlm.evaluation.predictions import as_predictions
from xlvlm.evaluation.vqa import normalize_answer


def rank_vectors(candidates: Mapping, baseline, target: str | None = None, top_k: int | None = None) -> list[dict]:
    """Rank ``{name: predictions}`` against ``baseline`` predictions (definitions above).

    Predictions are JSONL paths or lists of ``{"id", "prediction", ...}``. Returns
    ``[{"name", "score", "share_changed", "consistency", "target", "n", "n_changed"}]``,
    best first, the first ``top_k`` only when given.
    """
    if not candidates:
        raise XlvlmError("rank_vectors: no candidates given")
    base = {r["id"]: normalize_answer(r["prediction"]) for r in as_predictions(baseline, "baseline")}
    wanted = normalize_answer(target) if target is not None else None
    rows = []
    for name, predictions in candidates.items():
        records = as_predictions(predictions, str(name))
        missing = [r["id"] for r in records if r["id"] not in base]
        if missing:
            raise XlvlmError(f"candidate {name!r}: id {missing[0]!r} not in the baseline ({len(missing)} missing); rank runs on the same samples")
        new = [normalize_answer(r["prediction"]) for r in records if normalize_answer(r["prediction"]) != base[r["id"]]]
        counts = Counter(new)
        if wanted is not None:
            landing = wanted
        else:
            landing = min(counts.items(), key=lambda item: (-item[1], item[0]))[0] if counts else None
        share_changed = len(new) / len(records)
        consistency = counts[landing] / len(new) if new else 0.0
        rows.append({
            "name": str(name),
            "score": consistency * share_changed,
            "share_changed": share_changed,
            "consistency": consistency,
            "target": landing,
            "n": len(records),
            "n_changed": len(new),
        })
    rows.sort(key=lambda row: (-row["score"], row["name"]))
    return rows[:top_k] if top_k is not None else rows
