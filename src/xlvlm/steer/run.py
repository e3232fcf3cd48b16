"""Generating under steering, and the layer x alpha x method sweep.

Predictions are records ``{"id", "prediction", ...the sample's own fields}``, one JSON object
per line, the input of ``xlvlm evaluate``.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from pathlib import Path
from typing import Sequence


from xlvlm.data.jsonl import write_jsonl
from xlvlm.errors import XlvlmError, argument
from xlvlm.io import RESULT_FILE, OutputUnit, atomic_write_json, atomic_write_text, refuse_existing_output, stage_result
from xlvlm.progress import bar
from xlvlm.models.base import check_generation_settings
from xlvlm.steer.settings import describe_settings
from xlvlm.steer.vector import METHODS, SteeringVector

# What a previous sweep in the same folder may have left that this one replaces (sweep.json: the
# result file of xlvlm before result.json, so that no stale result of the old format stays).
OWNED = ["baseline.jsonl", "pred_*.jsonl", "sweep.md", "sweep.png", "command.txt", "sweep.json"]


def predict(vlm, samples: Sequence[dict], vector=None, alpha: float = 1.0,
            positions="all", operator="add", condition=None, max_new_tokens: int = 10,
            batch_size: int = 8, progress: bool = True, desc: str = "generate", on_batch=None) -> list[dict]:
    """Greedy prediction records for ``samples`` (:meth:`VLM.predict`), steered by ``vector`` when
    given (a SteeringVector, PerSampleSteering or LearnedSteering: anything with ``apply``).
    ``on_batch``, when given, receives each batch's records as soon as they exist."""
    check_generation_settings(batch_size, max_new_tokens)  # before any hook is added
    if not math.isfinite(alpha):
        raise XlvlmError(f"alpha must be a finite number, not {alpha}")
    context = (vector.apply(vlm, alpha=alpha, positions=positions, operator=operator, condition=condition)
               if vector is not None else nullcontext())
    with context:
        return vlm.predict(samples, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress,
                           desc=desc, on_batch=on_batch)


class AnswerShift:
    """The sweep's scorer for "move ``source`` answers to ``target``": success against side effects.

    ``scorer(predictions, baseline) -> row fields``: ``success`` / ``baseline_success`` (share of
    source questions answered ``target``), ``side_accuracy_change`` / ``side_unchanged`` (the
    other answer types), ``accuracy`` and ``per_type`` accuracy (see
    :func:`xlvlm.evaluation.targeted_report`). Any function of the same shape works as a scorer.
    """

    def __init__(self, source: str = "yes", target: str = "no"):
        self.source, self.target = source, target

    def __call__(self, predictions: list[dict], baseline: list[dict]) -> dict:
        from xlvlm.evaluation import targeted_report, vqa_report

        report = vqa_report(predictions)
        targeted = targeted_report(predictions, self.source, self.target, baseline=baseline)
        overall = targeted.get("side_effects_overall") or {}
        return {
            "success": targeted.get("success"),
            "baseline_success": targeted.get("baseline_success"),
            "side_accuracy_change": overall.get("accuracy_change"),
            "side_unchanged": overall.get("unchanged"),
            "accuracy": report.get("accuracy"),
            "per_type": {k: v.get("accuracy") for k, v in report.get("per_type", {}).items()},
        }


def _hidden_sizes(vector) -> set[int]:
    """The sizes of the vectors a steering adds: a SteeringVector's per layer, a
    PerSampleSteering's or LearnedSteering's ``hidden_size``."""
    if isinstance(vector, SteeringVector):
        return {vector.layer_activations[key].shape[-1] for key in vector.layers}
    return {vector.hidden_size}


def _label(vector) -> tuple[str, str]:
    """(method, layer) of a sweep row: what the vector was made with, and where it steers."""
    return str(vector.metadata.get("method", "vector")), ",".join(vector.layers)


def _check_sweep(vlm, vectors: dict, alphas: list[float], condition) -> None:
    """A sweep has vectors and finite alphas, and its vectors and condition fit the model."""
    empty = [name for name, values in (("vectors", vectors), ("alphas", alphas)) if not values]
    if empty:
        raise XlvlmError(f"an empty sweep: no {empty[0]} given")
    if not all(math.isfinite(a) for a in alphas):
        raise XlvlmError(f"alphas must be finite numbers, not {alphas}")
    sizes = set().union(*(_hidden_sizes(vector) for vector in vectors.values()))
    if sizes and sizes != {vlm.hidden_size}:  # before the baseline is generated, not after
        raise XlvlmError(f"the stores' vectors have size {sorted(sizes)[0]} but the model {vlm.name} has hidden size "
                         f"{vlm.hidden_size}; give the --model the stores were extracted with")
    if condition is not None and condition.direction.shape[-1] != vlm.hidden_size:
        raise XlvlmError(f"the condition's direction has size {condition.direction.shape[-1]} but the model "
                         f"{vlm.name} has hidden size {vlm.hidden_size}; learn it from this model's features")


def _sweep_row(vector, alpha: float, scores: dict) -> dict:
    """``{"method", "layer", "alpha", **scores}``, + ``concepts`` / ``purity`` for a concept vector."""
    method, layer = _label(vector)
    row = {"method": method, "layer": layer, "alpha": alpha, **scores}
    if isinstance(vector.metadata.get("concepts"), dict) and layer in vector.metadata["concepts"]:
        row.update(concepts=vector.metadata["concepts"][layer], purity=vector.metadata["purity"][layer])
    return row


def _sweep_settings(vectors: dict, positions, operator, condition, n_samples: int, max_new_tokens: int) -> dict:
    """The settings recorded in a sweep's result.json."""
    return {"positions": positions,
            "operator": operator if isinstance(operator, str) else getattr(operator, "__name__", "custom"),
            "normalize": all(v.metadata.get("normalized", False) for v in vectors.values()),
            "condition": None if condition is None else {"layer": condition.layer, "threshold": condition.threshold},
            "n_samples": n_samples, "max_new_tokens": max_new_tokens}


def sweep(vlm, vectors: dict, samples: Sequence[dict], alphas, scorer=None, *, positions="all", operator="add",
          condition=None, max_new_tokens: int = 5, batch_size: int = 16, out: str | Path | None = None,
          progress: bool = True, command: str | None = None, overwrite: bool = False) -> list[dict]:
    """Steer with every vector of ``vectors`` at every alpha, and score each run.

    vectors: ``{name: steering}``, each a SteeringVector, PerSampleSteering or LearnedSteering (a
    row's method and layer come from its metadata and layers); scorer: ``(predictions, baseline) -> dict`` of row fields (default
    :class:`AnswerShift` "yes" -> "no"). Returns one row per (vector, alpha):
    ``{"method", "layer", "alpha", **scorer fields}`` (+ ``concepts`` / ``purity`` for a concept
    vector of one layer). With ``out``, writes baseline and per-config predictions and
    ``result.json`` (stage "sweep"; and, for an :class:`AnswerShift`, ``sweep.md`` and ``sweep.png``; with
    ``command``, ``command.txt``) as one unit (:class:`xlvlm.io.OutputUnit`): a sweep that stops
    early leaves the previous ones as they were. An existing ``out`` is refused before any work
    unless ``overwrite=True``.
    """
    samples = list(samples)
    scorer = AnswerShift() if scorer is None else scorer
    alphas = [float(a) for a in alphas]
    _check_sweep(vlm, vectors, alphas, condition)
    out = Path(out) if out else None
    if out:
        refuse_existing_output(out, overwrite=overwrite, option=argument("out"))
    unit = OutputUnit(out, RESULT_FILE, OWNED) if out else nullcontext()
    with unit:
        work = unit.work if out else None  # until the commit, files go to the unit's work folder
        baseline = predict(vlm, samples, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress,
                           desc="baseline")
        if work:
            write_jsonl(baseline, work / "baseline.jsonl")
        rows = []
        configs = [(vector, alpha) for vector in vectors.values() for alpha in alphas]
        for vector, alpha in bar(configs, desc="sweep", unit="config", enabled=progress):
            method, layer = _label(vector)
            preds = predict(vlm, samples, vector, alpha=alpha, positions=positions, operator=operator,
                            condition=condition, max_new_tokens=max_new_tokens, batch_size=batch_size,
                            progress=progress, desc=f"{method} L{layer} a={alpha:g}")
            rows.append(_sweep_row(vector, alpha, scorer(preds, baseline)))
            if work:
                write_jsonl(preds, work / f"pred_{method}_L{layer}_a{alpha:g}.jsonl")
        if work:
            settings = _sweep_settings(vectors, positions, operator, condition, len(samples), max_new_tokens)
            if isinstance(scorer, AnswerShift):
                write_sweep(rows, work, scorer.source, scorer.target, settings)
            else:
                atomic_write_json(work / RESULT_FILE, stage_result("sweep", settings=settings, rows=rows))
            if command is not None:
                atomic_write_text(work / "command.txt", command)
            unit.commit()
    return rows


def sweep_stores(vlm, source, target, samples: Sequence[dict], layers, alphas, methods=("mean-diff",),
                 source_answer: str = "yes", target_answer: str = "no", normalize: bool = False,
                 n_concepts: int = 8, concept_method: str = "kmeans", seed: int = 0, **options) -> list[dict]:
    """The command line's sweep: a vector per (method name, layer) from two stores, scored by
    :class:`AnswerShift` (``source_answer`` -> ``target_answer``); ``options`` go to :func:`sweep`.

    methods: names of ``xlvlm.steer.aggregators.AGGREGATORS``; for ``concept``, n_concepts /
    concept_method / seed set the dictionary learnt per layer on the two stores' rows.
    """
    methods, layers = list(methods), list(layers)
    empty = [name for name, values in (("methods", methods), ("layers", layers), ("alphas", list(alphas)))
             if not values]
    if empty:
        raise XlvlmError(f"an empty sweep: no {empty[0]} given")
    if not all(math.isfinite(float(a)) for a in alphas):
        raise XlvlmError(f"alphas must be finite numbers, not {list(alphas)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise XlvlmError(f"unknown steering method(s) {', '.join(map(repr, unknown))}: use any of {', '.join(METHODS)}")
    # Every (method, layer) vector first, once (not once per alpha): a method that cannot be
    # computed (e.g. concepts that do not separate the stores) fails before any generation.
    vectors = {}
    for method in methods:
        opts = {"n_concepts": n_concepts, "concept_method": concept_method, "seed": seed} if method == "concept" else {}
        for layer in layers:
            vector = SteeringVector.compute(source, target, [layer], method=method, **opts)
            vectors[method, str(layer)] = vector.normalized() if normalize else vector
    return sweep(vlm, vectors, samples, alphas, AnswerShift(source_answer, target_answer), **options)


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


def write_sweep(rows: list[dict], out: Path, source_answer: str, target_answer: str,
                settings: dict | None = None) -> None:
    from xlvlm.figures import new_figure, save_figure

    settings = settings or {}
    atomic_write_json(out / RESULT_FILE, stage_result("sweep", source=source_answer, target=target_answer,
                                                      settings=settings, rows=rows))
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
