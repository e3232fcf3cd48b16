"""The folder of ``xlvlm steer learn``: a learned steering model and its training report, as one unit.

    DIR/learned.safetensors   the model (LearnedSteering.save; LearnedSteering.load(DIR) reads it)
    DIR/learning_curve.png    train and held-out loss per epoch, held-out cosine
    DIR/calibration.png       score and side effect against alpha (with ``--calibrate``)
    DIR/command.txt           the command (when given)
    DIR/result.json           stage "learned-steering": settings, training report, history
"""

from __future__ import annotations

from pathlib import Path

from xlvlm.io import RESULT_FILE, OutputUnit, atomic_write_json, atomic_write_text, stage_result
from xlvlm.steer.learned import LEARNED_FILE, LearnedSteering

STAGE = "learned-steering"
OWNED = [LEARNED_FILE, "learning_curve.png", "calibration.png", "command.txt"]


def learned_result(model: LearnedSteering) -> dict:
    """The stage's result object: what was learnt, from what, how well (see ``fit``'s report)."""
    meta = model.metadata
    settings = {"context_layer": model.context_layer, "steer_layer": model.steer_layer, "hidden": model.hidden,
                "hidden_size": model.hidden_size, "model": meta.get("model", ""), "context": meta.get("context"),
                "shifts": meta.get("shifts"), **meta.get("settings", {})}
    extra = {"calibration": meta["calibration"]} if "calibration" in meta else {}
    return stage_result(STAGE, settings=settings, training=meta.get("training", {}), history=model.history, **extra)


def write_learned(model: LearnedSteering, out, command: str | None = None, calibration=None) -> Path:
    """Write the folder ``out`` as one unit (:class:`xlvlm.io.OutputUnit`): a run that stops early
    leaves a previous one as it was. Returns the model file's path. calibration: a
    :class:`~xlvlm.steer.calibrate.Calibration` of the model (its curve is drawn)."""
    out = Path(out)
    with OutputUnit(out, RESULT_FILE, OWNED) as unit:
        model.save(unit.work / LEARNED_FILE)
        if model.history:
            _plot_history(model.history, unit.work / "learning_curve.png")
        if calibration is not None:
            from xlvlm.steer.calibrate_outputs import plot_calibration

            plot_calibration(calibration, unit.work / "calibration.png")
        if command is not None:
            atomic_write_text(unit.work / "command.txt", command)
        atomic_write_json(unit.work / RESULT_FILE, learned_result(model))
        unit.commit()
    return out / LEARNED_FILE


def _plot_history(history: list[dict], path: Path) -> None:
    from xlvlm.figures import new_figure, save_figure

    fig, (loss_ax, cos_ax) = new_figure(1, 2, figsize=(9, 3.4))
    epochs = [r["epoch"] for r in history]
    loss_ax.plot(epochs, [r["train_loss"] for r in history], label="train")
    if any("val_loss" in r for r in history):
        loss_ax.plot(epochs, [r.get("val_loss") for r in history], label="held out")
        cos_ax.plot(epochs, [r.get("val_cosine") for r in history], color="C1")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss (MSE + L1 - w cos)")
    loss_ax.legend(fontsize=8)
    cos_ax.set_xlabel("epoch")
    cos_ax.set_ylabel("held-out cosine to the true vector")
    for ax in (loss_ax, cos_ax):
        ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=110)
