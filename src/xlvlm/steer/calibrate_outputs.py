"""The folder of ``xlvlm steer calibrate``, written as one unit:

    DIR/result.json               stage "calibration": the choice, settings, data, every row
    DIR/calibration.png           score and side effect against alpha, per candidate
    DIR/calibrated.safetensors    the chosen steering, its metadata["calibration"] stamped
    DIR/command.txt               the command (when given)
"""

from __future__ import annotations

from pathlib import Path

from xlvlm.io import RESULT_FILE, OutputUnit, atomic_write_json, atomic_write_text, stage_result
from xlvlm.steer.calibrate import Calibration

STAGE = "calibration"
CALIBRATED_FILE = "calibrated.safetensors"
PLOT_FILE = "calibration.png"
OWNED = [CALIBRATED_FILE, PLOT_FILE, "command.txt"]


def calibration_result(calibration: Calibration) -> dict:
    return stage_result(STAGE, chosen=calibration.stamp(), settings=calibration.settings, on=calibration.on,
                        rows=calibration.rows)


def stamped(steering, calibration: Calibration):
    """``steering`` with ``metadata["calibration"]`` set (the object itself, changed)."""
    steering.metadata["calibration"] = calibration.stamp()
    return steering


def write_calibration(calibration: Calibration, steering, out, command: str | None = None) -> Path:
    """Write ``out`` (module docstring); ``steering``: the chosen candidate, saved stamped."""
    out = Path(out)
    with OutputUnit(out, RESULT_FILE, OWNED) as unit:
        stamped(steering, calibration).save(unit.work / CALIBRATED_FILE)
        plot_calibration(calibration, unit.work / PLOT_FILE)
        if command is not None:
            atomic_write_text(unit.work / "command.txt", command)
        atomic_write_json(unit.work / RESULT_FILE, calibration_result(calibration))
        unit.commit()
    return out / CALIBRATED_FILE


def plot_calibration(calibration: Calibration, path: Path) -> None:
    """Score (solid) and side effect (dashed, right axis) against alpha for each candidate; the
    side-effect limit as a grey line, the choice circled."""
    from xlvlm.figures import new_figure, save_figure

    fig, ax = new_figure(figsize=(6.4, 4.2))
    side_ax = ax.twinx()
    none = next(r for r in calibration.rows if r["candidate"] == "none")
    names = list(dict.fromkeys(r["candidate"] for r in calibration.rows if r["candidate"] != "none"))
    for i, name in enumerate(names):
        rows = [none] + [r for r in calibration.rows if r["candidate"] == name]
        rows.sort(key=lambda r: r["alpha"])
        alphas = [r["alpha"] for r in rows]
        ax.plot(alphas, [r["score"] for r in rows], color=f"C{i % 10}", marker="o", label=f"{name}: score")
        if any(r["side_effect"] is not None for r in rows):
            side_ax.plot(alphas, [None if r["side_effect"] is None else 100 * r["side_effect"] for r in rows],
                         color=f"C{i % 10}", linestyle="--", marker="x", label=f"{name}: side effect")
    side_ax.axhline(100 * calibration.settings["max_side_effect"], color="0.6", linewidth=1)
    if calibration.score is not None:
        ax.plot([calibration.alpha], [calibration.score], marker="o", markersize=14, markerfacecolor="none",
                markeredgecolor="black", linestyle="none", label=f"chosen: {calibration.candidate}, alpha "
                f"{calibration.alpha:g}")
    ax.set_xlabel("alpha")
    ax.set_ylabel(f"score ({calibration.settings['objective']})")
    side_ax.set_ylabel("side effect: control accuracy change (points)")
    ax.set_title("calibration on held-out samples (grey line: side-effect limit)")
    ax.grid(alpha=0.3)
    handles = ax.get_legend_handles_labels()
    side_handles = side_ax.get_legend_handles_labels()
    ax.legend(handles[0] + side_handles[0], handles[1] + side_handles[1], fontsize=7)
    save_figure(fig, path, dpi=110)
