"""Measuring the organism: VQA accuracy on easy-VQA and what its captions name.

Predictions come from greedy generation through ``xlvlm.load_vlm(folder).generate`` (the same
path as any hub model); VQA accuracy is the project's own (:func:`xlvlm.evaluation.vqa.vqa_report`,
exact match after VQA normalisation for single-answer samples).
"""

from __future__ import annotations

from pathlib import Path

from xlvlm.apps.organism import data as ev
from xlvlm.apps.organism.captions import naming_report


def _as_vlm(model, device: str = "cpu"):
    if isinstance(model, (str, Path)):
        from xlvlm.models import load_vlm

        return load_vlm(model, device=device)
    return model


def predict(model, samples: list[dict], max_new_tokens: int = 4, batch_size: int = 64,
            progress: bool = False) -> list[dict]:
    """``samples`` with a ``prediction`` field: greedy answers of ``model`` (a VLM or a folder)."""
    return _as_vlm(model).predict(samples, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress)


def measure_vqa(model, samples: list[dict] | None = None, split: str = "test", batch_size: int = 64,
                 progress: bool = False) -> dict:
    """``{"overall", "yes/no", "shape", "color", "n"}`` accuracies (fractions) of greedy answers.

    ``samples``: easy-VQA samples (default: every question of ``split``).
    """
    from xlvlm.evaluation.vqa import vqa_report

    samples = ev.vqa_samples(split) if samples is None else samples
    predictions = predict(model, samples, max_new_tokens=2, batch_size=batch_size, progress=progress)
    report = vqa_report([{k: v for k, v in p.items() if k != "image_id"} for p in predictions])
    out = {"overall": report["accuracy"], "n": report["n"]}
    out.update({kind: r["accuracy"] for kind, r in report["per_type"].items()})
    return out


def measure_captions(model, samples: list[dict] | None = None, split: str = "test", batch_size: int = 64,
                 progress: bool = False) -> dict:
    """What the greedy captions name (see :func:`~xlvlm.apps.organism.captions.naming_report`)."""
    samples = ev.caption_samples(split, with_color=True) if samples is None else samples
    predictions = predict(model, samples, max_new_tokens=5, batch_size=batch_size, progress=progress)
    return naming_report(predictions)
