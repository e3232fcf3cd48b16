"""Writing a patching result as one output unit: ``result.json`` (stage "patch"),
``patching.safetensors`` (every pair's recovery and patched metric), ``recovery.png`` (the
mean over pairs, or the first pair when their cells differ), ``pair_<i>.png`` per pair and,
for the image grid, ``grid_<i>.png`` (recovery per site over the picture)."""

from __future__ import annotations

from pathlib import Path

from xlvlm.io import RESULT_FILE, OutputUnit, atomic_save_tensors, atomic_write_json, atomic_write_text, stage_result
from xlvlm.patching.plots import grid_overlay, heatmap
from xlvlm.patching.result import PatchResult

STAGE = "patch"
OWNED = ["patching.safetensors", "recovery.png", "pair_*.png", "grid_*.png", "command.txt"]
#: Per-pair figures beyond this many pairs are left out (the tensors keep every pair).
MAX_PAIR_FIGURES = 50


def _figures(result: PatchResult, work: Path) -> dict[str, list[str]]:
    mean = result.mean_recovery()
    first = result.pairs[0]
    what = f"{result.method} patching, {result.metric}"
    heatmap(mean if mean is not None else first.recovery, result.sites, first.labels, work / "recovery.png",
            f"{what}: mean recovery over {len(result.pairs)} pair(s)" if mean is not None else f"{what}: pair {first.id}")
    figures: dict[str, list[str]] = {"pairs": [], "grids": []}
    for i, pair in enumerate(result.pairs[:MAX_PAIR_FIGURES]):
        labels = [t.split(":", 1)[1] for t in pair.labels] if result.positions == "tokens" else pair.labels
        name = f"pair_{i}.png"
        heatmap(pair.recovery, result.sites, labels, work / name,
                f"pair {pair.id}: {pair.prompt} ({' vs '.join(pair.answers)})")
        figures["pairs"].append(name)
        if pair.grid is not None:
            name = f"grid_{i}.png"
            grid_overlay(pair.image, pair.recovery, result.sites, pair.grid, pair.extra, work / name,
                         f"pair {pair.id}: recovery per image cell")
            figures["grids"].append(name)
    return figures


def write_patching(result: PatchResult, out, command: str | None = None, model: str | None = None) -> Path:
    """Write ``result`` into the folder ``out`` as one unit (an earlier result there is replaced
    only once everything is written). Returns the result file's path."""
    out = Path(out)
    with OutputUnit(out, RESULT_FILE, OWNED) as unit:
        atomic_save_tensors(unit.work / "patching.safetensors", result.tensors())
        figures = _figures(result, unit.work)
        if command is not None:
            atomic_write_text(unit.work / "command.txt", command)
        atomic_write_json(unit.work / RESULT_FILE, stage_result(STAGE, model=model, **result.to_json(),
                                                                figures=figures))
        unit.commit()
    return out / RESULT_FILE
