"""Learned steering (L2S) of the hallucinating organism with its alpha chosen by calibration,
for three ways of making the training vectors (the contrasts):

- ``framing``: the state at the last prompt token of the question asked as "does the image
  contain a X?" minus that of the benchmark's "is there a X in the image?" (as in
  :mod:`~xlvlm.apps.organism.hallucination_steering`);
- ``answers``: the right answer minus the wrong one forced after the question, written "yes" /
  "no", each the mean state over the answer's tokens (``before-at:.``);
- ``answers.``: the same, written "yes." / "no." (``before-at:.`` then keeps the word, not the
  full stop).

The vectors' norms differ by an order of magnitude between contrasts (the framing moves one
token's state a little; a forced answer is a whole other token), so one alpha cannot fit them
all: :func:`~xlvlm.steer.calibrate.calibrate` picks it for each contrast on training images that
the vectors were not made from (``calibration_images``), under a 2-point limit on the accuracy of
shape/colour questions about those images. The chosen alpha is then scored on the held-out test
images (POPE F1, yes-ratio, side effects on test shape/colour questions).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from xlvlm.errors import XlvlmError

CONTRASTS = ("framing", "answers", "answers.")


@dataclass
class CalibratedL2SSettings:
    """``train_images`` make the vectors; ``calibration_images`` (other training images) choose
    alpha; ``test_images`` (None: all 1,000 held-out images) score it."""

    contrasts: tuple = CONTRASTS
    train_images: int = 240
    calibration_images: int = 40
    test_images: int | None = None
    side_questions: int = 200
    steer_layer: int = 3
    context_layer: int = 0
    alphas: tuple = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    max_side_effect: float = 0.02
    positions: str = "from-last-prompt"
    epochs: int = 100
    seed: int = 0
    batch_size: int = 64


def _forced(samples: list[dict], right: bool, period: bool) -> list[dict]:
    """Each question with its right (or wrong) yes/no answer as the response to teacher-force."""
    out = []
    for s in samples:
        answer = s["label"] if right else ("no" if s["label"] == "yes" else "yes")
        out.append(dict(s, answer=answer + ("." if period else "")))
    return out


def _vectors(vlm, train: list[dict], contrast: str, settings: CalibratedL2SSettings):
    """The per-sample training vectors (P2S) of ``contrast`` at the steering layer."""
    import xlvlm
    from xlvlm.apps.organism.hallucination_steering import reframe
    from xlvlm.steer import PerSampleSteering

    layer = [settings.steer_layer]

    def states(samples, select):
        return xlvlm.extract(vlm, samples, layers=layer, select=select, batch_size=settings.batch_size, progress=False)

    if contrast == "framing":
        return PerSampleSteering.from_stores(states(train, "last-prompt"),
                                             states([reframe(s) for s in train], "last-prompt"), layer)
    if contrast not in CONTRASTS:
        raise XlvlmError(f"unknown contrast {contrast!r}: use one of {', '.join(CONTRASTS)}")
    period = contrast == "answers."
    return PerSampleSteering.from_stores(states(_forced(train, False, period), "before-at:."),
                                         states(_forced(train, True, period), "before-at:."), layer)


def _pope(predictions: list[dict]) -> dict:
    from xlvlm.evaluation.pope import pope_report

    overall = pope_report(predictions)["overall"]
    return {"f1": overall["f1"], "yes_ratio": overall["yes_ratio"], "accuracy": overall["accuracy"]}


def _side(vlm, steering, alpha, side: list[dict], baseline: float, settings) -> float:
    from xlvlm.evaluation.vqa import vqa_report
    from xlvlm.steer.run import predict

    predictions = predict(vlm, side, steering, alpha=alpha, positions=settings.positions, max_new_tokens=2,
                          batch_size=settings.batch_size, progress=False)
    return vqa_report(predictions)["accuracy"] - baseline


def run_contrast(vlm, contrast: str, parts: dict, settings: CalibratedL2SSettings) -> dict:
    """Vectors, L2S fit, calibration and test scores of one contrast: a result row."""
    import xlvlm
    from xlvlm.steer import LearnedSteering
    from xlvlm.steer.calibrate import CalibrationSettings, calibrate
    from xlvlm.steer.run import predict

    shifts = _vectors(vlm, parts["train"], contrast, settings)
    context = xlvlm.extract(vlm, parts["train"], layers=[settings.context_layer], select="last-prompt",
                            batch_size=settings.batch_size, progress=False)
    learned = LearnedSteering.fit(context, shifts, settings.context_layer, settings.steer_layer,
                                  epochs=settings.epochs, seed=settings.seed)
    calibration = calibrate(vlm, {"L2S": learned}, parts["calibration"], parts["calibration_side"],
                            CalibrationSettings(alphas=settings.alphas, max_side_effect=settings.max_side_effect,
                                                positions=settings.positions, max_new_tokens=2,
                                                batch_size=settings.batch_size), progress=False)
    alpha = calibration.alpha
    test = predict(vlm, parts["test"], learned if alpha else None, alpha=alpha, positions=settings.positions,
                   max_new_tokens=2, batch_size=settings.batch_size, progress=False)
    side_change = _side(vlm, learned if alpha else None, alpha, parts["test_side"], parts["test_side_accuracy"],
                        settings)
    norms = shifts.vectors[str(settings.steer_layer)].norm(dim=1)
    return {"contrast": contrast, "alpha": alpha, "vector_norm_mean": float(norms.mean()),
            "val_cosine": learned.metadata.get("training", {}).get("val_cosine"),
            "calibration": {"score": calibration.score, "side_effect": calibration.side_effect,
                            "rows": calibration.rows},
            "test": _pope(test), "test_side_effect": side_change}


def _parts(settings: CalibratedL2SSettings) -> dict:
    """Train, calibration and test questions (disjoint images), with shape/colour questions."""
    import numpy as np

    from xlvlm.apps.organism import data as ev
    from xlvlm.apps.organism.hallucination_steering import _shape_colour_questions
    from xlvlm.apps.organism.pope import pope_benchmark

    image_ids = sorted(ev.image_labels("train"))
    wanted = settings.train_images + settings.calibration_images
    if wanted > len(image_ids):
        raise XlvlmError(f"train_images + calibration_images = {wanted}: the training part has "
                         f"{len(image_ids)} images")
    chosen = np.random.default_rng(settings.seed).choice(len(image_ids), size=wanted, replace=False)
    train_ids = [image_ids[i] for i in chosen[:settings.train_images]]
    calibration_ids = [image_ids[i] for i in chosen[settings.train_images:]]
    calibration_side = _shape_colour_questions("train", settings.side_questions, settings.seed + 1)
    return {"train": pope_benchmark("train", seed=settings.seed, image_ids=train_ids),
            "calibration": pope_benchmark("train", seed=settings.seed, image_ids=calibration_ids),
            "calibration_side": calibration_side,
            "test": pope_benchmark("test", seed=settings.seed, images=settings.test_images),
            "test_side": _shape_colour_questions("test", settings.side_questions, settings.seed)}


def calibrated_l2s(settings: CalibratedL2SSettings | None = None, progress: bool = True) -> dict:
    """Every contrast's row (see :func:`run_contrast`) on ``organism:hallucinating``, and the
    unsteered model's test scores: ``{"settings", "none", "rows"}``."""
    from xlvlm import organism
    from xlvlm.progress import announce
    from xlvlm.evaluation.vqa import vqa_report
    from xlvlm.steer.run import predict

    settings = settings or CalibratedL2SSettings()
    vlm = organism.load("hallucinating")
    parts = _parts(settings)
    generation = {"max_new_tokens": 2, "batch_size": settings.batch_size, "progress": False}
    parts["test_side_accuracy"] = vqa_report(predict(vlm, parts["test_side"], **generation))["accuracy"]
    none = _pope(predict(vlm, parts["test"], **generation))
    rows = []
    for number, contrast in enumerate(settings.contrasts, start=1):
        announce(f"calibrated L2S {number}/{len(settings.contrasts)}: contrast {contrast!r} (vectors, L2S fit, "
                 "alpha on the calibration images, test)", progress)
        rows.append(run_contrast(vlm, contrast, parts, settings))
    return {"settings": asdict(settings), "n_train": len(parts["train"]), "n_calibration": len(parts["calibration"]),
            "n_test": len(parts["test"]), "none": none, "rows": rows}


STAGE = "calibrated-l2s"
PLOT_FILE = "calibrated_l2s.png"


def plot_curves(result: dict, path) -> None:
    """One panel per contrast: calibration F1 and yes-ratio (solid) and side effect (dashed)
    against alpha, the chosen alpha marked."""
    from xlvlm.figures import new_figure, save_figure

    rows = result["rows"]
    fig, axes = new_figure(1, len(rows), figsize=(4.2 * len(rows), 3.6), squeeze=False)
    for ax, row in zip(axes[0], rows):
        curve = sorted(row["calibration"]["rows"], key=lambda r: r["alpha"])
        alphas = [max(r["alpha"], result["settings"]["alphas"][0] / 2) for r in curve]  # alpha 0 left of the grid
        ax.plot(alphas, [r["score"] for r in curve], marker="o", label="F1 (calibration images)")
        ax.plot(alphas, [r["yes_ratio"] for r in curve], marker="s", label="yes-ratio")
        ax.plot(alphas, [r["side_effect"] for r in curve], marker="x", linestyle="--", label="side effect")
        ax.axhline(result["settings"]["max_side_effect"], color="0.6", linewidth=1)
        ax.axvline(max(row["alpha"], result["settings"]["alphas"][0] / 2), color="black", linewidth=1, linestyle=":")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("alpha (leftmost point: no steering)")
        ax.set_title(f"{row['contrast']}: chose alpha {row['alpha']:g}, test F1 {100 * row['test']['f1']:.1f}",
                     fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    save_figure(fig, path, dpi=110)


def write_result(result: dict, out, command: str | None = None):
    """``out``/result.json (stage ``calibrated-l2s``) and the curves, as one unit."""
    from pathlib import Path

    from xlvlm.io import RESULT_FILE, OutputUnit, atomic_write_json, atomic_write_text, stage_result

    out = Path(out)
    with OutputUnit(out, RESULT_FILE, [PLOT_FILE, "command.txt"]) as unit:
        plot_curves(result, unit.work / PLOT_FILE)
        if command:
            atomic_write_text(unit.work / "command.txt", command + "\n")
        atomic_write_json(unit.work / RESULT_FILE, stage_result(STAGE, **result))
        unit.commit()
    return out / RESULT_FILE


def table_lines(result: dict) -> list[str]:
    """contrast | mean vector norm | chosen alpha | test F1 | yes-ratio | side effect (points)."""
    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}"

    lines = [f"{'contrast':<10} {'norm':>6} {'alpha':>6} {'F1':>6} {'yes %':>6} {'side':>6}",
             f"{'none':<10} {'-':>6} {'0':>6} {pct(result['none']['f1']):>6} {pct(result['none']['yes_ratio']):>6} "
             f"{'-':>6}"]
    for row in result["rows"]:
        lines.append(f"{row['contrast']:<10} {row['vector_norm_mean']:>6.2f} {row['alpha']:>6g} "
                     f"{pct(row['test']['f1']):>6} {pct(row['test']['yes_ratio']):>6} "
                     f"{100 * row['test_side_effect']:>+6.1f}")
    return lines
