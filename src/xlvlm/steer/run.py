"""Generating under steering, and the layer x alpha x method sweep.

Predictions are records ``{"id", "prediction", ...the sample's own fields}``, one JSON object
per line, the input of ``xlvlm evaluate``.
"""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from xlvlm.data.jsonl import write_jsonl
from xlvlm.errors import XlvlmError
from xlvlm.models.base import check_generation_settings
from xlvlm.io import OutputUnit, atomic_write_json, atomic_write_text
from xlvlm.steer.vector import METHODS, SteeringVector

# What a previous sweep in the same folder may have left that this one replaces.
OWNED = ["baseline.jsonl", "pred_*.jsonl", "sweep.md", "sweep.png", "command.txt"]


def predict(vlm, samples: Sequence[dict], vector: SteeringVector | None = None, alpha: float = 1.0,
            positions="all", operator="add", condition=None, max_new_tokens: int = 10,
            batch_size: int = 8, progress: bool = True, desc: str = "generate", on_batch=None) -> list[dict]:
    """Greedy prediction records for ``samples`` (:meth:`VLM.predict`), steered by ``vector``
    when given. ``on_batch``, when given, receives each batch's records as soon as they exist."""
    check_generation_settings(batch_size, max_new_tokens)  # before any hook is added
    if not math.isfinite(alpha):
        raise XlvlmError(f"alpha must be a finite number, not {alpha}")
    context = (vector.apply(vlm, alpha=alpha, positions=positions, operator=operator, condition=condition)
               if vector is not None else nullcontext())
    with context:
        return vlm.predict(samples, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress,
                           desc=desc, on_batch=on_batch)


def _row(method: str, layer: str, alpha: float, report: dict, targeted: dict) -> dict:
    overall = targeted.get("side_effects_overall") or {}
    return {
        "method": method, "layer": layer, "alpha": alpha,
        "success": targeted.get("success"),
        "baseline_success": targeted.get("baseline_success"),
        "side_accuracy_change": overall.get("accuracy_change"),
        "side_unchanged": overall.get("unchanged"),
        "accuracy": report.get("accuracy"),
        "per_type": {k: v.get("accuracy") for k, v in report.get("per_type", {}).items()},
    }


def sweep(vlm, source, target, samples: Sequence[dict], layers, alphas, methods=("mean-diff",),
          source_answer: str = "yes", target_answer: str = "no", positions="all", operator: str = "add",
          condition=None, normalize: bool = False, max_new_tokens: int = 5, batch_size: int = 16,
          out: str | Path | None = None, progress: bool = True, n_concepts: int = 8,
          concept_method: str = "kmeans", seed: int = 0, command: str | None = None) -> list[dict]:
    """Steer with every (method, layer, alpha) and score success against side effects.

    source/target: feature stores (same selector) giving the vectors; samples: evaluation
    questions with references; methods: any of ``xlvlm.steer.vector.METHODS``. For
    ``concept``, n_concepts / concept_method / seed set the dictionary learnt per layer on the
    two stores' rows (:meth:`SteeringVector.from_store_concepts`); its rows also record the
    concepts picked and their purity. Returns one row per configuration (see ``_row``) and,
    with ``out``, writes baseline and per-config predictions, ``sweep.json``, ``sweep.md``,
    ``sweep.png`` (and ``command.txt`` with ``command``) as one unit
    (:class:`xlvlm.io.OutputUnit`): a sweep that stops early leaves the previous ones as they were.
    """
    from xlvlm.evaluation import targeted_report, vqa_report

    samples = list(samples)
    methods, layers, alphas = list(methods), list(layers), [float(a) for a in alphas]
    empty = [name for name, values in (("methods", methods), ("layers", layers), ("alphas", alphas)) if not values]
    if empty:
        raise XlvlmError(f"an empty sweep: no {empty[0]} given")
    if not all(math.isfinite(a) for a in alphas):
        raise XlvlmError(f"alphas must be finite numbers, not {alphas}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise XlvlmError(f"unknown steering method(s) {', '.join(map(repr, unknown))}: use any of {', '.join(METHODS)}")
    out = Path(out) if out else None
    # Every (method, layer) vector first, once (not once per alpha): a method that cannot be
    # computed (e.g. concepts that do not separate the stores) fails before any generation.
    vectors = {}
    for method in methods:
        options = ({"n_concepts": n_concepts, "concept_method": concept_method, "seed": seed}
                   if method == "concept" else {})
        for layer in layers:
            vector = SteeringVector.compute(source, target, [layer], method=method, **options)
            vectors[method, str(layer)] = vector.normalized() if normalize else vector
    sizes = {vector.layer_activations[key].shape[-1] for vector in vectors.values() for key in vector.layers}
    if sizes and sizes != {vlm.hidden_size}:  # before the baseline is generated, not after
        raise XlvlmError(f"the stores' vectors have size {sorted(sizes)[0]} but the model {vlm.name} has hidden size "
                         f"{vlm.hidden_size}; give the --model the stores were extracted with")
    if condition is not None and condition.direction.shape[-1] != vlm.hidden_size:
        raise XlvlmError(f"the condition's direction has size {condition.direction.shape[-1]} but the model "
                         f"{vlm.name} has hidden size {vlm.hidden_size}; learn it from this model's features")
    unit = OutputUnit(out, "sweep.json", OWNED) if out else nullcontext()
    with unit:
        work = unit.work if out else None  # until the commit, files go to the unit's work folder
        baseline = predict(vlm, samples, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress,
                           desc="baseline")
        if work:
            write_jsonl(baseline, work / "baseline.jsonl")
        rows = []
        configs = [(m, str(layer), float(a)) for m in methods for layer in layers for a in alphas]
        for method, layer, alpha in tqdm(configs, desc="sweep", unit="config", disable=not progress):
            vector = vectors[method, layer]
            preds = predict(vlm, samples, vector, alpha=alpha, positions=positions, operator=operator,
                            condition=condition, max_new_tokens=max_new_tokens, batch_size=batch_size,
                            progress=progress, desc=f"{method} L{layer} a={alpha:g}")
            report = vqa_report(preds)
            targeted = targeted_report(preds, source_answer, target_answer, baseline=baseline)
            row = _row(method, vector.layers[0], alpha, report, targeted)
            if method == "concept":
                key = vector.layers[0]
                row.update(concepts=vector.metadata["concepts"][key], purity=vector.metadata["purity"][key])
            rows.append(row)
            if work:
                write_jsonl(preds, work / f"pred_{method}_L{vector.layers[0]}_a{alpha:g}.jsonl")
        if work:
            settings = {"positions": positions, "operator": operator, "normalize": normalize,
                        "condition": None if condition is None else {"layer": condition.layer,
                                                                      "threshold": condition.threshold},
                        "n_samples": len(samples), "max_new_tokens": max_new_tokens}
            write_sweep(rows, work, source_answer, target_answer, settings)
            if command is not None:
                atomic_write_text(work / "command.txt", command)
            unit.commit()
    return rows


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def sweep_table(rows: list[dict]) -> str:
    types = sorted({t for r in rows for t in r["per_type"]})
    header = ["method", "layer", "alpha", "success %", "side acc. change (pts)", "side unchanged %", "accuracy %"] + \
             [f"acc {t} %" for t in types]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        change = "-" if r["side_accuracy_change"] is None else f"{100 * r['side_accuracy_change']:+.1f}"
        cells = [r["method"], r["layer"], f"{r['alpha']:g}", _pct(r["success"]), change, _pct(r["side_unchanged"]),
                 _pct(r["accuracy"])] + [_pct(r["per_type"].get(t)) for t in types]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def describe_settings(settings: dict) -> str:
    """One line: where, how and when the sweep steered."""
    condition = settings.get("condition")
    when = (f"only samples past the condition at layer {condition.get('layer')}" if isinstance(condition, dict)
            else "every sample (no condition)")
    return (f"Positions: {settings.get('positions', 'all')}; operator: {settings.get('operator', 'add')}"
            f"{', unit-norm vectors' if settings.get('normalize') else ''}; steered: {when}.")


def write_sweep(rows: list[dict], out: Path, source_answer: str, target_answer: str,
                settings: dict | None = None) -> None:
    from xlvlm.figures import new_figure, save_figure

    settings = settings or {}
    atomic_write_json(out / "sweep.json", {"source": source_answer, "target": target_answer, "settings": settings,
                                           "rows": rows})
    atomic_write_text(out / "sweep.md", f"Steering {source_answer} -> {target_answer}: success on "
                      f"'{source_answer}' questions against side effects on the other answer types. "
                      f"{describe_settings(settings) if settings else ''}\n\n" + sweep_table(rows))
    fig, ax = new_figure(figsize=(6, 4.2))
    # One colour per method, one marker and line style per layer: with 4 methods x 3 layers a
    # colour cycle alone would repeat and two different configurations would look the same.
    methods = list(dict.fromkeys(r["method"] for r in rows))
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    markers, styles = "osD^vP*X", ["-", "--", ":", "-."]
    for m, method in enumerate(methods):
        for l, layer in enumerate(layers):
            pts = [r for r in rows if r["method"] == method and r["layer"] == layer]
            if not pts:
                continue
            xs = [100 * (1 - (r["side_unchanged"] if r["side_unchanged"] is not None else 1)) for r in pts]
            ys = [100 * (r["success"] or 0) for r in pts]
            ax.plot(xs, ys, color=f"C{m % 10}", marker=markers[l % len(markers)], linestyle=styles[l % len(styles)],
                    label=f"{method} L{layer}")
            for r, x, y in zip(pts, xs, ys):
                ax.annotate(f"{r['alpha']:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    # Keep the side-effect axis at least 0-5% wide: a perfectly gated sweep (all points at 0%)
    # otherwise gets an axis of +-0.04% that reads as if something changed.
    changed = [100 * (1 - r["side_unchanged"]) for r in rows if r["side_unchanged"] is not None]
    ax.set_xlim(-1, max(5.0, max(changed, default=0.0) + 2))
    ax.set_xlabel("side effects: other-type answers changed (%)")
    ax.set_ylabel(f"success: '{source_answer}' questions answered '{target_answer}' (%)")
    ax.set_title(f"steering {source_answer} -> {target_answer} (labels: alpha)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, out / "sweep.png", dpi=120)


def load_sweep(path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise XlvlmError(f"{path}: unreadable sweep results ({exc})")
