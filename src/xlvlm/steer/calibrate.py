"""Calibration: choose the steering strength (and, among candidates, the steering) on held-out
samples, under a limit on side effects.

For every candidate steering s (any kind: fixed, gated, per-sample, learned) and every alpha in
``settings.alphas``, the validation samples are generated under s at alpha and scored:

  score(s, alpha)        the objective on the validation samples (POPE F1, or the share of
                         ``source`` answers moved to ``target``)
  side(s, alpha)         |accuracy(control, steered) - accuracy(control, unsteered)|, a fraction,
                         on control questions that the steering should leave alone (None when
                         no control samples are given: then no limit applies, and the result
                         says so)

The choice is the (s, alpha) of highest score among those with side <= ``max_side_effect``
(ties: the smaller |alpha|, then the earlier candidate); alpha = 0 (no steering) is always a
candidate, so a steering that only breaks things is calibrated to 0. The samples used here must
not be the ones the vectors were made from: a calibration on training samples rewards
overfitting, and the result records the data it ran on so that a reader can check.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

from xlvlm.errors import XlvlmError
from xlvlm.steer.registry import OBJECTIVES


@dataclass
class CalibrationSettings:
    """What calibration tries and how it scores.

    alphas: the strengths tried (0 is always added); objective: "pope-f1" (samples need a POPE
    ``label`` or a yes/no ``answer``) or "answer-shift" (share of ``source`` questions answered
    ``target``, :class:`~xlvlm.steer.run.AnswerShift`); max_side_effect: the largest accuracy
    change allowed on the control samples, a fraction (0.02 = 2 points); positions, operator:
    how the steering is applied; max_new_tokens, batch_size: generation.
    """

    alphas: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0)
    objective: str = "pope-f1"
    max_side_effect: float = 0.02
    source: str = "yes"
    target: str = "no"
    positions: object = "all"
    operator: str = "add"
    max_new_tokens: int = 5
    batch_size: int = 16

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise XlvlmError(f"unknown calibration objective {self.objective!r}: use one of {', '.join(OBJECTIVES)}")
        alphas = [float(a) for a in self.alphas]
        if not alphas or not all(math.isfinite(a) for a in alphas):
            raise XlvlmError(f"calibration alphas must be finite numbers, not {list(self.alphas)}")
        if not (0 <= self.max_side_effect <= 1):
            raise XlvlmError(f"max_side_effect is a fraction in [0, 1] (0.02 = 2 points), not {self.max_side_effect}")
        self.alphas = tuple(sorted(set([0.0, *alphas]), key=lambda a: (abs(a), a)))


@dataclass
class Calibration:
    """The outcome: the chosen candidate and alpha, and every (candidate, alpha) row tried.

    rows: ``{"candidate", "alpha", "score", "side_effect", "allowed", **details}`` in the order
    tried; ``on``: what the calibration ran on (sample counts and the caller's description).
    """

    candidate: str
    alpha: float
    score: float | None
    side_effect: float | None
    rows: list[dict]
    settings: dict
    on: dict = field(default_factory=dict)
    scale: dict | None = None  # {layer: norm} when the vectors were rescaled (:class:`~xlvlm.steer.scale.Normalized`)

    def stamp(self) -> dict:
        """The record a steering file keeps in ``metadata["calibration"]``."""
        return {"alpha": self.alpha, "objective": self.settings["objective"], "score": self.score,
                "side_effect": self.side_effect, "max_side_effect": self.settings["max_side_effect"],
                "candidate": self.candidate, "on": self.on, **({"scale": self.scale} if self.scale else {})}

    def __repr__(self) -> str:
        side = "unmeasured" if self.side_effect is None else f"{100 * self.side_effect:.1f} pts"
        score = "-" if self.score is None else f"{self.score:.3f}"
        return (f"Calibration({self.candidate!r}, alpha={self.alpha:g}, {self.settings['objective']}={score}, "
                f"side effect {side})")


def _score(predictions: list[dict], baseline: list[dict], settings: CalibrationSettings) -> dict:
    """``{"score", **details}`` of one run's validation predictions."""
    if settings.objective == "pope-f1":
        from xlvlm.evaluation import pope_report

        overall = pope_report(predictions, where="the calibration samples")["overall"]
        return {"score": overall["f1"], "yes_ratio": overall["yes_ratio"], "accuracy": overall["accuracy"]}
    from xlvlm.steer.run import AnswerShift

    shift = AnswerShift(settings.source, settings.target)(predictions, baseline)
    return {"score": shift["success"], "accuracy": shift["accuracy"]}


def _accuracy(predictions: list[dict]) -> float | None:
    from xlvlm.evaluation import vqa_report

    return vqa_report(predictions)["accuracy"]


def _choose(rows: list[dict]) -> dict:
    """The allowed row of highest score (ties: smaller |alpha|, then the earlier row)."""
    allowed = [r for r in rows if r["allowed"] and r["score"] is not None]
    if not allowed:
        raise XlvlmError("no calibration run produced a score (the objective needs labelled samples)")
    return max(allowed, key=lambda r: (r["score"], -abs(r["alpha"]), -rows.index(r)))


def calibrate(vlm, candidates, samples: Sequence[dict], control: Sequence[dict] | None = None,
              settings: CalibrationSettings | None = None, *, progress: bool = True, on: dict | None = None
              ) -> Calibration:
    """Choose the steering and alpha (module docstring) for ``vlm``.

    candidates: one steering (any kind of :class:`~xlvlm.steer.protocol.Steering`) or ``{name:
    steering}`` (e.g. one vector per layer: the calibration then picks the layer too);
    samples: the validation samples (held out from the ones the steering was made from);
    control: samples whose accuracy must not move (with reference answers); on: a description of
    the data recorded in the result (paths, splits).
    """
    from xlvlm.progress import bar
    from xlvlm.steer.run import predict

    settings = settings or CalibrationSettings()
    if not isinstance(candidates, dict):
        candidates = {str(getattr(candidates, "metadata", {}).get("method", "steering")): candidates}
    if not candidates:
        raise XlvlmError("calibrate: no steering given")
    samples, control = list(samples), (list(control) if control else None)
    if not samples:
        raise XlvlmError("calibrate: no validation samples")
    generation = {"max_new_tokens": settings.max_new_tokens, "batch_size": settings.batch_size, "progress": False}

    def run(steering, alpha, items):
        return predict(vlm, items, None if alpha == 0 else steering, alpha=alpha, positions=settings.positions,
                       operator=settings.operator, **generation)

    baseline = run(None, 0.0, samples)
    control_accuracy = _accuracy(run(None, 0.0, control)) if control else None
    rows = []
    configs = [(name, alpha) for name in candidates for alpha in settings.alphas if alpha != 0]
    rows.append(_row("none", 0.0, _score(baseline, baseline, settings), 0.0 if control else None, settings))
    for name, alpha in bar(configs, desc="calibrate: steered runs", unit="run", enabled=progress):
        steering = candidates[name]
        scores = _score(run(steering, alpha, samples), baseline, settings)
        side = None
        if control:
            steered = _accuracy(run(steering, alpha, control))
            side = None if steered is None or control_accuracy is None else abs(steered - control_accuracy)
        rows.append(_row(name, alpha, scores, side, settings))
    best = _choose(rows)
    described = {"n_samples": len(samples), "n_control": len(control) if control else 0, **(on or {})}
    return Calibration(best["candidate"], best["alpha"], best["score"], best["side_effect"], rows,
                       _settings_record(settings), described)


def _row(name: str, alpha: float, scores: dict, side: float | None, settings: CalibrationSettings) -> dict:
    allowed = side is None or side <= settings.max_side_effect + 1e-12
    return {"candidate": name, "alpha": alpha, **scores, "side_effect": side, "allowed": allowed}


def _settings_record(settings: CalibrationSettings) -> dict:
    record = asdict(settings)
    record["alphas"] = list(settings.alphas)
    record["positions"] = settings.positions if isinstance(settings.positions, (int, str)) else str(settings.positions)
    return record
