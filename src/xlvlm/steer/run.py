"""Generating under steering, and the layer x alpha x method sweep.

Predictions are records ``{"id", "prediction", ...the sample's own fields}``, one JSON object
per line, the input of ``xlvlm evaluate``.
"""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Sequence


from xlvlm.data.jsonl import write_jsonl
from xlvlm.errors import XlvlmError, argument
from xlvlm.io import RESULT_FILE, OutputUnit, atomic_write_json, atomic_write_text, refuse_existing_output, stage_result
from xlvlm.progress import bar
from xlvlm.models.base import check_generation_settings
from xlvlm.steer.aggregators import aggregator_named, option_names
from xlvlm.steer.apply import steering as steering_hooks
from xlvlm.steer.protocol import Steering, gated
from xlvlm.settings import settings_with
from xlvlm.steer.settings import SweepSettings, describe_settings
from xlvlm.steer.registry import AGGREGATORS
from xlvlm.steer.vector import SteeringVector

log = logging.getLogger(__name__)

# What a previous sweep in the same folder may have left that this one replaces.
OWNED = ["baseline.jsonl", "pred_*.jsonl", "sweep.md", "sweep.png", "command.txt"]


def predict(vlm, samples: Sequence[dict], steering: Steering | None = None, alpha: float = 1.0,
            positions="all", operator="add", condition=None, **generation) -> list[dict]:
    """The one steer-then-generate: greedy prediction records for ``samples`` (:meth:`VLM.predict`),
    steered by ``steering`` when given (any kind: :class:`~xlvlm.steer.protocol.Steering`), behind
    ``condition`` when given.

    generation: :meth:`VLM.predict`'s keywords (``max_new_tokens``, default 10 here;
    ``batch_size``; ``progress``, default True here; ``desc``; ``on_batch``, which receives each
    batch's records as soon as they exist; ``top_k``)."""
    generation = {"max_new_tokens": 10, "progress": True, **generation}
    check_generation_settings(generation.get("batch_size", 8), generation["max_new_tokens"])  # before any hook
    if not math.isfinite(alpha):
        raise XlvlmError(f"alpha must be a finite number, not {alpha}")
    context = (nullcontext() if steering is None else
               steering_hooks(vlm, gated(steering, condition), alpha=alpha, positions=positions, operator=operator))
    with context as handle:
        records = vlm.predict(samples, **generation)
        if handle is not None and hasattr(handle, "counts"):
            _check_steered(handle.counts(), positions, condition is not None)
    return records


def _check_steered(counts: tuple[int, int], positions, gated: bool) -> None:
    """A prompt index that no sample reaches steers nothing: an error, not a run that looks
    steered; one that some samples do not reach is a warning with the count steered (a
    condition, ``gated``, may leave samples alone on purpose)."""
    steered, seen = counts
    from xlvlm.steer.apply import parse_positions

    if not isinstance(parse_positions(positions), int):
        return
    if seen and not steered and not gated:
        raise XlvlmError(f"positions {positions}: no sample has a position at or past index {positions}, so nothing "
                         f"was steered; use a smaller index (prompt and image tokens count) or 'all'")
    if steered < seen:
        log.warning("positions %s: steered %d of %d samples (the others are shorter, or left alone by "
                    "the condition)", positions, steered, seen)


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


def _row_names(vectors: dict) -> list[tuple[str, str]]:
    """(name, layer) of each sweep entry, in order: a key ``name`` steers at its vector's layers; a
    key ``(name, layer)`` names both. They name the rows and the prediction files."""
    names = []
    for key, vector in vectors.items():
        name, layer = key if isinstance(key, tuple) and len(key) == 2 else (key, ",".join(vector.layers))
        name, layer = str(name), str(layer)
        if not name or name in (".", "..") or any(c in name + layer for c in "/\\\0"):
            raise XlvlmError(f"sweep entry {str(key)[:80]!r}: a name that cannot be part of a file name; "
                             f"use letters, digits and - _ . +")
        names.append((name, layer))
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise XlvlmError(f"two sweep entries are both named {twice[0]!r} at layer {twice[1]}; give each its own name")
    return names


class PopeScore:
    """A sweep scorer for hallucination steering: POPE metrics of the steered answers against the
    samples' labels (``label`` or a yes/no ``answer``), and how many answers moved.

    ``scorer(predictions, baseline) -> row fields``: ``f1``, ``yes_ratio``, ``accuracy``,
    ``precision``, ``recall`` (:func:`xlvlm.evaluation.pope_report`, all samples) and ``changed``
    (share of answers that differ from the unsteered ones)."""

    def __call__(self, predictions: list[dict], baseline: list[dict]) -> dict:
        from xlvlm.evaluation import pope_report

        overall = pope_report(predictions, where="the sweep's samples")["overall"]
        before = {r["id"]: r["prediction"] for r in baseline}
        changed = sum(before.get(r["id"]) != r["prediction"] for r in predictions) / max(len(predictions), 1)
        return {**{k: overall[k] for k in ("f1", "yes_ratio", "accuracy", "precision", "recall")}, "changed": changed}


def _check_sweep(vlm, vectors: dict, alphas: list[float], condition) -> None:
    """A sweep has vectors and finite alphas, and its vectors and condition fit the model."""
    empty = [name for name, values in (("vectors", vectors), ("alphas", alphas)) if not values]
    if empty:
        raise XlvlmError(f"an empty sweep: no {empty[0]} given")
    if not all(math.isfinite(a) for a in alphas):
        raise XlvlmError(f"alphas must be finite numbers, not {alphas}")
    sizes = {vector.hidden_size for vector in vectors.values()}
    if sizes and sizes != {vlm.hidden_size}:  # before the baseline is generated, not after
        raise XlvlmError(f"the stores' vectors have size {sorted(sizes)[0]} but the model {vlm.name} has hidden size "
                         f"{vlm.hidden_size}; give the --model the stores were extracted with")
    if condition is not None and condition.direction.shape[-1] != vlm.hidden_size:
        raise XlvlmError(f"the condition's direction has size {condition.direction.shape[-1]} but the model "
                         f"{vlm.name} has hidden size {vlm.hidden_size}; learn it from this model's features")


def _sweep_row(name: str, layer: str, vector, alpha: float, scores: dict) -> dict:
    """``{"method": name, "layer", "alpha", **scores}``, + the per-layer details that the vector's
    aggregator shows in a row (``metadata["row_details"]``, e.g. a concept vector's ``concepts``
    and ``purity``) at this layer."""
    row = {"method": name, "layer": layer, "alpha": alpha, **scores}
    metadata = getattr(vector, "metadata", {})
    for detail in metadata.get("row_details", ()):
        if isinstance(metadata.get(detail), dict) and layer in metadata[detail]:
            row[detail] = metadata[detail][layer]
    return row


def _recorded(settings: SweepSettings, vectors: dict, n_samples: int) -> dict:
    """The settings recorded in a sweep's result.json."""
    operator = settings.operator
    condition = settings.condition
    return {"positions": settings.positions,
            "operator": operator if isinstance(operator, str) else getattr(operator, "__name__", "custom"),
            "normalize": all(v.metadata.get("normalized", False) for v in vectors.values()),
            "condition": None if condition is None else {"layer": condition.layer, "threshold": condition.threshold},
            "n_samples": n_samples, "max_new_tokens": settings.max_new_tokens}


def sweep(vlm, vectors: dict, samples: Sequence[dict], alphas, scorer=None, settings: SweepSettings | None = None, *,
          out: str | Path | None = None, progress: bool = True, command: str | None = None,
          overwrite: bool = False, **options) -> list[dict]:
    """Steer with every entry of ``vectors`` at every alpha, and score each run.

    vectors: ``{name: steering}`` (any kind, :class:`~xlvlm.steer.protocol.Steering`), or
    ``{(name, layer): steering}``; a row and its prediction file are named by the key (``method``
    = name, ``layer`` = the key's layer or the vector's layers). settings: a
    :class:`~xlvlm.steer.settings.SweepSettings` (positions, operator, condition, max_new_tokens,
    batch_size), or its fields as keywords (``options``). scorer: ``(predictions, baseline) ->
    dict`` of row fields (default :class:`AnswerShift` of the settings' answers, "yes" -> "no").
    Returns one row per (entry, alpha): ``{"method", "layer", "alpha", **scorer fields}`` (+ the
    aggregator's row details, e.g. ``concepts`` / ``purity`` for a concept vector of one layer).
    With ``out``, writes baseline and per-config predictions ``pred_<name>_L<layer>_a<alpha>.jsonl`` and ``result.json``
    (stage "sweep"; and, for an :class:`AnswerShift`, ``sweep.md`` and ``sweep.png``; with
    ``command``, ``command.txt``) as one unit (:class:`xlvlm.io.OutputUnit`): a sweep that stops
    early leaves the previous ones as they were. An existing ``out`` is refused before any work
    unless ``overwrite=True``.
    """
    s = settings_with(SweepSettings, settings, options, "sweep")
    samples = list(samples)
    scorer = AnswerShift(s.source_answer, s.target_answer) if scorer is None else scorer
    alphas = [float(a) for a in alphas]
    _check_sweep(vlm, vectors, alphas, s.condition)
    names = _row_names(vectors)
    generation = {"max_new_tokens": s.max_new_tokens, "batch_size": s.batch_size, "progress": progress}
    out = Path(out) if out else None
    if out:
        refuse_existing_output(out, overwrite=overwrite, option=argument("out"))
    unit = OutputUnit(out, RESULT_FILE, OWNED) if out else nullcontext()
    with unit:
        work = unit.work if out else None  # until the commit, files go to the unit's work folder
        baseline = predict(vlm, samples, **generation, desc="baseline")
        if work:
            write_jsonl(baseline, work / "baseline.jsonl")
        rows = []
        configs = [(name, layer, vector, alpha) for (name, layer), vector in zip(names, vectors.values())
                   for alpha in alphas]
        for name, layer, vector, alpha in bar(configs, desc="sweep", unit="config", enabled=progress):
            preds = predict(vlm, samples, vector, alpha=alpha, positions=s.positions, operator=s.operator,
                            condition=s.condition, **generation, desc=f"{name} L{layer} a={alpha:g}")
            rows.append(_sweep_row(name, layer, vector, alpha, scorer(preds, baseline)))
            if work:
                write_jsonl(preds, work / f"pred_{name}_L{layer}_a{alpha:g}.jsonl")
        if work:
            recorded = _recorded(s, vectors, len(samples))
            if isinstance(scorer, AnswerShift):
                write_sweep(rows, work, scorer.source, scorer.target, recorded)
            else:
                atomic_write_json(work / RESULT_FILE, stage_result("sweep", settings=recorded, rows=rows))
            if command is not None:
                atomic_write_text(work / "command.txt", command)
            unit.commit()
    return rows


def sweep_stores(vlm, source, target, samples: Sequence[dict], layers, alphas, settings: SweepSettings | None = None,
                 *, out: str | Path | None = None, progress: bool = True, command: str | None = None,
                 overwrite: bool = False, **options) -> list[dict]:
    """The command line's sweep: a vector per (method, layer) from two stores, scored by
    :class:`AnswerShift` (``source_answer`` -> ``target_answer``), run by :func:`sweep`.

    settings: a :class:`~xlvlm.steer.settings.SweepSettings` (``methods``: names of
    ``xlvlm.steer.aggregators.AGGREGATORS``; each method gets the options it takes, e.g. the
    concept method n_concepts / concept_method / seed), or its fields as keywords (``options``).
    """
    s = settings_with(SweepSettings, settings, options, "sweep_stores")
    methods, layers = list(s.methods), list(layers)
    empty = [name for name, values in (("methods", methods), ("layers", layers), ("alphas", list(alphas)))
             if not values]
    if empty:
        raise XlvlmError(f"an empty sweep: no {empty[0]} given")
    if not all(math.isfinite(float(a)) for a in alphas):
        raise XlvlmError(f"alphas must be finite numbers, not {list(alphas)}")
    unknown = [m for m in methods if m not in AGGREGATORS]  # the registry as it is now: added aggregators count
    if unknown:
        raise XlvlmError(f"unknown steering method(s) {', '.join(map(repr, unknown))}: use any of "
                         f"{', '.join(AGGREGATORS)}")
    # Every (method, layer) vector first, once (not once per alpha): a method that cannot be
    # computed (e.g. concepts that do not separate the stores) fails before any generation.
    vectors, given = {}, {"n_concepts": s.n_concepts, "concept_method": s.concept_method, "seed": s.seed}
    for method in methods:
        takes = option_names(aggregator_named(method))
        opts = {name: value for name, value in given.items() if takes is None or name in takes}  # its own
        for layer in layers:
            vector = SteeringVector.compute(source, target, [layer], method=method, **opts)
            vectors[method, ",".join(vector.layers)] = vector.normalized() if s.normalize else vector
    return sweep(vlm, vectors, samples, alphas, AnswerShift(s.source_answer, s.target_answer), s, out=out,
                 progress=progress, command=command, overwrite=overwrite)


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
