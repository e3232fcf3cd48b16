"""Removing the hallucinating organism's "yes" bias: no steering, a fixed vector, a gated vector,
per-sample P2S (oracle) and learned L2S, compared on held-out POPE-style questions.

Everything is learnt on the benchmark's **train** part (easy-VQA training images) and scored on
its **test** part (held-out images): :func:`~xlvlm.apps.organism.pope.pope_benchmark`.

The methods (one steering layer ``L``, one context layer ``c <= L``, last prompt token and the
generated tokens steered, ``positions="from-last-prompt"``):

- ``none``: the hallucinating organism as it is.
- ``mean-diff``: one fixed vector, mean(state | absent object answered "no") - mean(state |
  absent object answered "yes") at ``L`` over the training questions (the model's own answers).
- ``mean-diff + condition``: the same vector, applied only to the samples a learnt
  :class:`~xlvlm.steer.Condition` at ``c`` lets through (trained to tell questions about absent
  objects from questions about present objects and from shape/colour questions).
- ``P2S (oracle)``: each test sample's own vector from a contrastive pair of prompt framings on
  the same image (:data:`FRAMING`): the state at ``L`` of the question asked as "does the image
  contain a teal shape?" (a phrasing the hallucination was not trained on, answered truthfully)
  minus that of the benchmark's "is there a teal shape in the image?". It needs a second
  forward pass of every input at test time, so it is the oracle L2S is measured against.
- ``L2S``: :class:`~xlvlm.steer.LearnedSteering` (linear, tanh, linear; hidden 100) trained on
  the training questions' P2S vectors, predicting each test input's vector from its own state at
  ``c`` (its last prompt token), in the same forward pass.

Side effects: accuracy on easy-VQA test questions about the shape and the colour
("what shape is in the image?", "what color is the shape?") under each method, against no
steering (P2S has no contrast for them: "-").

:func:`compare_steering` returns the result (stage ``hallucination-steering``);
:func:`write_comparison` writes it with its plot as one output unit.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from xlvlm.errors import XlvlmError
from xlvlm.io import RESULT_FILE, OutputUnit, atomic_write_json, stage_result
from xlvlm.progress import announce

STAGE = "hallucination-steering"
METHODS = ("none", "mean-diff", "mean-diff + condition", "P2S (oracle)", "L2S")
SPLITS = ("random", "popular", "adversarial", "all")
METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")
SIDE_TYPES = ("shape", "color")
PLOT_FILE = "hallucination_steering.png"
#: The contrastive framing of P2S: the benchmark's phrasing -> the same question in a phrasing
#: the hallucination was not trained on (see :func:`reframe`).
FRAMING = ("is there a X in the image?", "does the image contain a X?")


@dataclass
class ComparisonSettings:
    """What :func:`compare_steering` runs. ``test_images``: None for all 1,000 held-out images.
    ``alphas``: per method (chosen on held-out *training* images, see docs/hallucination.md)."""

    model: str = "hallucinating"
    reference: str | None = "original"
    train_images: int = 300
    test_images: int | None = None
    side_questions: int = 300
    steer_layer: int = 3
    context_layer: int = 0
    alphas: dict = field(default_factory=lambda: {"mean-diff": 0.5, "mean-diff + condition": 0.5,
                                                  "P2S (oracle)": 1.0, "L2S": 1.0})
    positions: str = "from-last-prompt"
    epochs: int = 100
    seed: int = 0
    batch_size: int = 64


def reframe(sample: dict) -> dict:
    """The same sample asked in :data:`FRAMING`'s other phrasing ("is there a red shape in the image?"
    -> "does the image contain a red shape?"); the id is kept, so the two pair up."""
    prompt = sample["prompt"]
    if not (prompt.startswith("is there a ") and prompt.endswith(" in the image?")):
        raise XlvlmError(f"sample {sample.get('id')!r}: {prompt!r} is not in the benchmark's phrasing "
                         f"'is there a ... in the image?'; P2S reframes only POPE-style questions")
    question = "does the image contain a " + prompt[len("is there a "):-len(" in the image?")] + "?"
    return dict(sample, prompt=question, question=question)


def _subset_store(store, layer: str, keep: list[bool]):
    """An in-memory store of the rows of ``store`` at ``layer`` where ``keep`` holds."""
    from xlvlm.features.store import sample_subset

    rows = [i for i, k in enumerate(keep) if k]
    if not rows:
        raise XlvlmError("no training question falls in one of the mean-diff groups (absent object answered "
                         "yes / no); use more training images")
    return sample_subset(store, rows, layers=[layer])


def _answers(predictions: list[dict]) -> list[str]:
    from xlvlm.evaluation.pope import pope_answer

    return [pope_answer(p["prediction"]) for p in predictions]


def _shape_colour_questions(part: str, n: int, seed: int) -> list[dict]:
    """``n`` easy-VQA questions of ``part`` about the shape or the colour, half each (seeded)."""
    from xlvlm.apps.organism.data import stratified_subset, vqa_samples

    chosen = [s for s in vqa_samples(part) if s.get("answer_type") in SIDE_TYPES]
    return stratified_subset(chosen, per_type=max(1, n // len(SIDE_TYPES)), seed=seed)


def _pope_rows(method: str, predictions: list[dict]) -> list[dict]:
    from xlvlm.evaluation.pope import pope_report

    report = pope_report(predictions)
    scores = dict(report["per_split"], all=report["overall"])
    return [{"method": method, "split": split, "n": scores[split]["n"],
             **{m: scores[split][m] for m in METRICS}} for split in SPLITS if split in scores]


def _side_accuracy(predictions: list[dict]) -> dict:
    from xlvlm.evaluation.vqa import vqa_report

    per_type = vqa_report(predictions)["per_type"]
    return {kind: per_type[kind]["accuracy"] for kind in SIDE_TYPES if kind in per_type}


class _Runs:
    """The organism under comparison: extraction and greedy answers with the settings' layers,
    batch and positions; ``timing`` collects how long each step took."""

    def __init__(self, settings: ComparisonSettings, progress: bool):
        from xlvlm import organism

        self.settings, self.progress, self.timing = settings, progress, {}
        self.vlm = organism.load(settings.model)
        self.layers = sorted({settings.context_layer, settings.steer_layer})

    def extract(self, samples: list[dict]):
        import xlvlm

        return xlvlm.extract(self.vlm, samples, layers=self.layers, select="last-prompt",
                             batch_size=self.settings.batch_size, progress=self.progress)

    def predict(self, samples: list[dict], steering=None, alpha: float = 1.0, condition=None,
                desc: str = "generate") -> list[dict]:
        from xlvlm.steer.run import predict

        s, started = self.settings, time.perf_counter()
        out = predict(self.vlm, samples, steering, alpha=alpha, positions=s.positions, condition=condition,
                      max_new_tokens=2, batch_size=s.batch_size, progress=self.progress, desc=desc)
        self.timing[f"generate_seconds/{desc}"] = time.perf_counter() - started
        return out


def _learn(runs: _Runs, train: list[dict]) -> dict:
    """Every learnt method from the train part: ``{method: (steering, condition)}`` (no P2S: it
    is made from the test inputs themselves)."""
    import torch

    from xlvlm.steer import Condition, LearnedSteering, PerSampleSteering, SteeringVector

    s = runs.settings
    steer, ctx = str(s.steer_layer), str(s.context_layer)
    started = time.perf_counter()
    plain, reframed = runs.extract(train), runs.extract([reframe(x) for x in train])
    runs.timing["extract_train_seconds"] = time.perf_counter() - started
    absent = [x["label"] == "no" for x in train]
    said = _answers(runs.predict(train, desc="train answers"))
    vector = SteeringVector.from_stores(_subset_store(plain, steer, [a and y == "yes" for a, y in zip(absent, said)]),
                                        _subset_store(plain, steer, [a and y == "no" for a, y in zip(absent, said)]),
                                        [steer])
    # The gate's "leave alone" side: questions about present objects, and shape/colour questions
    # about training images.
    gate_no = plain.features(ctx)[[i for i, a in enumerate(absent) if a]]
    gate_other = [plain.features(ctx)[[i for i, a in enumerate(absent) if not a]]]
    if s.side_questions:
        gate_other.append(runs.extract(_shape_colour_questions("train", s.side_questions, s.seed)).features(ctx))
    condition = Condition.learn(gate_no, torch.cat(gate_other), s.context_layer)
    started = time.perf_counter()
    learned = LearnedSteering.fit(plain, PerSampleSteering.from_stores(plain, reframed, [steer]), s.context_layer,
                                  s.steer_layer, epochs=s.epochs, seed=s.seed)
    runs.timing["l2s_fit_seconds"] = time.perf_counter() - started
    return {"none": (None, None), "mean-diff": (vector, None), "mean-diff + condition": (vector, condition),
            "L2S": (learned, None)}


def _oracle(runs: _Runs, test: list[dict]):
    """P2S: each test input's own vector, from its second (reframed) forward pass."""
    from xlvlm.steer import PerSampleSteering

    started = time.perf_counter()
    oracle = PerSampleSteering.from_stores(runs.extract(test), runs.extract([reframe(x) for x in test]),
                                           [str(runs.settings.steer_layer)])
    runs.timing["p2s_test_extract_seconds"] = time.perf_counter() - started
    return oracle


class Checkpoints:
    """The finished parts of a comparison, kept in ``folder`` as each finishes, so that a run
    killed late resumes from them: the learnt methods (steering files) and each method's scores
    (``scores-<method>.json``). Parts of other settings are discarded when the folder is opened;
    ``folder=None`` keeps nothing."""

    def __init__(self, folder, settings: ComparisonSettings):
        self.folder = Path(folder) if folder is not None else None
        if self.folder is None:
            return
        import json
        import shutil

        stamp = self.folder / "settings.json"
        if stamp.is_file() and json.loads(stamp.read_text()) != asdict(settings):
            shutil.rmtree(self.folder)  # another comparison's parts: nothing here applies
        if not stamp.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(stamp, asdict(settings))

    def _path(self, name: str) -> Path | None:
        return None if self.folder is None else self.folder / name.replace(" ", "_").replace("+", "and")

    def scores(self, method: str) -> dict | None:
        import json

        path = self._path(f"scores-{method}.json")
        return json.loads(path.read_text()) if path is not None and path.is_file() else None

    def keep_scores(self, method: str, scores: dict) -> None:
        if self.folder is not None:
            atomic_write_json(self._path(f"scores-{method}.json"), scores)

    def learnt(self) -> dict | None:
        """The learnt methods of :func:`_learn`, if all were kept."""
        from xlvlm.steer import Condition, LearnedSteering, SteeringVector

        files = [self._path(f) for f in ("mean-diff.safetensors", "condition.safetensors", "l2s.safetensors")]
        if self.folder is None or not all(f.is_file() for f in files):
            return None
        vector, condition = SteeringVector.load(files[0]), Condition.load(files[1])
        return {"none": (None, None), "mean-diff": (vector, None), "mean-diff + condition": (vector, condition),
                "L2S": (LearnedSteering.load(files[2]), None)}

    def keep_learnt(self, methods: dict) -> None:
        if self.folder is not None:
            vector, condition = methods["mean-diff + condition"]
            vector.save(self._path("mean-diff.safetensors"), overwrite=True)
            condition.save(self._path("condition.safetensors"), overwrite=True)
            methods["L2S"][0].save(self._path("l2s.safetensors"), overwrite=True)


def _score(runs: _Runs, methods: dict, test: list[dict], side: list[dict],
           kept: Checkpoints) -> tuple[list[dict], list[dict]]:
    """(POPE rows per method and split, side-effect rows per method) on the test part; each
    method's scores are kept as they finish (and taken from ``kept`` when already there)."""
    rows, side_rows, baseline = [], [], None
    for method in METHODS:
        done = kept.scores(method)
        if done is None:
            done = _score_method(runs, method, methods[method], test, side, baseline)
            kept.keep_scores(method, done)
        rows += done["rows"]
        side_rows.append(done["side"])
        if baseline is None and done["side"].get(SIDE_TYPES[0]) is not None:
            baseline = {k: done["side"][k] for k in SIDE_TYPES if k in done["side"]}
    return rows, side_rows


def _score_method(runs: _Runs, method: str, steering_and_gate, test, side, baseline) -> dict:
    """One method's POPE rows and side-effect row (``baseline``: no steering's side accuracy)."""
    steering, gate = steering_and_gate() if callable(steering_and_gate) else steering_and_gate
    alpha = runs.settings.alphas.get(method, 1.0) if steering is not None else 0.0
    announce(f"scoring {method} on {len(test)} test questions", runs.progress)
    rows = _pope_rows(method, runs.predict(test, steering, alpha, gate, desc=method))
    if method == "P2S (oracle)" or not side:  # no contrast exists for a shape/colour question
        return {"rows": rows, "side": {"method": method, **{k: None for k in SIDE_TYPES}}}
    accuracy = _side_accuracy(runs.predict(side, steering, alpha, gate, desc=f"{method} side"))
    baseline = accuracy if baseline is None else baseline
    return {"rows": rows, "side": {"method": method, **accuracy,
                                   **{f"{k}_change": accuracy[k] - baseline[k] for k in accuracy}}}


def compare_steering(settings: ComparisonSettings | None = None, progress: bool = False,
                     confused: dict | None = None, checkpoints=None) -> dict:
    """Fit every method on the train part, score it on the test part: the stage's result dict.

    confused: the adversarial split's confusion ranking (default: measured on the original
    organism, :func:`~xlvlm.apps.organism.pope.confusions`). checkpoints: a folder where each
    finished part is kept (:class:`Checkpoints`); a rerun with the same settings resumes from it."""
    from xlvlm.apps.organism.pope import pope_benchmark

    s = settings or ComparisonSettings()
    check_settings(s)
    runs, kept = _Runs(s, progress), Checkpoints(checkpoints, s)
    train = pope_benchmark("train", seed=s.seed, images=s.train_images, confused=confused)
    test = pope_benchmark("test", seed=s.seed, images=s.test_images, confused=confused)
    side = _shape_colour_questions("test", s.side_questions, s.seed) if s.side_questions else []
    methods = kept.learnt()
    if methods is None:
        announce(f"learning mean-diff, the condition and L2S from {len(train)} training questions", progress)
        methods = _learn(runs, train)
        kept.keep_learnt(methods)
    methods["P2S (oracle)"] = lambda: (_oracle(runs, test), None)  # two extractions: only if not scored yet
    rows, side_rows = _score(runs, methods, test, side, kept)
    reference = []
    if s.reference:
        reference = (kept.scores("reference") or {}).get("rows")
        if reference is None:
            reference = _pope_rows(f"{s.reference} organism", predict_with(s.reference, test, s.batch_size, progress))
            kept.keep_scores("reference", {"rows": reference})
    vector, condition = methods["mean-diff + condition"]
    return stage_result(
        STAGE, model=s.model, settings=asdict(s), n_train=len(train), n_test=len(test),
        n_side=len(side), rows=rows, side_effects=side_rows, reference=reference,
        training=methods["L2S"][0].metadata.get("training", {}), condition=condition.to_dict(),
        vector_norm=vector.norms()[str(s.steer_layer)], timing=runs.timing,
        goals=goals(rows, side_rows, reference))


def check_settings(s: ComparisonSettings) -> None:
    """Every setting within what the organism and easy-VQA hold, checked before any model loads:
    layers of the organism's decoder (context at or before the steered one), image and question
    counts at most what each easy-VQA part has (never clamped silently)."""
    import json

    from xlvlm import organism
    from xlvlm.apps.organism.data import image_paths, vqa_samples

    config = json.loads((organism.path(s.model) / "config.json").read_text(encoding="utf-8"))
    n_layers = int(config.get("text_config", config).get("num_hidden_layers", 0))
    for name, layer in (("steer layer", s.steer_layer), ("context layer", s.context_layer)):
        if not 0 <= layer < n_layers:
            raise XlvlmError(f"{name} {layer}: the {s.model} organism has decoder layers 0 to {n_layers - 1}")
    if s.context_layer > s.steer_layer:
        raise XlvlmError(f"context layer {s.context_layer} comes after the steering layer {s.steer_layer}; "
                         f"L2S and the condition read the context before it is steered")
    # Side questions are drawn half per type, from the train part (the gate) and the test part.
    most_side = len(SIDE_TYPES) * min(sum(q.get("answer_type") == kind for q in vqa_samples(part))
                                      for kind in SIDE_TYPES for part in ("train", "test"))
    for name, value, least, most in (("train images", s.train_images, 1, len(image_paths("train"))),
                                     ("test images", s.test_images, 1, len(image_paths("test"))),
                                     ("side questions", s.side_questions, 0, most_side)):
        if value is not None and not least <= value <= most:
            raise XlvlmError(f"{name} {value}: easy-VQA has {most:,}; give {least} to {most:,}")


def predict_with(model: str, samples: list[dict], batch_size: int, progress: bool) -> list[dict]:
    from xlvlm import organism

    return organism.load(model).predict(samples, max_new_tokens=2, batch_size=batch_size, progress=progress,
                                        desc=model)


def _row(rows: list[dict], method: str, split: str = "all") -> dict | None:
    return next((r for r in rows if r["method"] == method and r["split"] == split), None)


def goals(rows: list[dict], side_rows: list[dict], reference: list[dict] | None) -> dict:
    """The goals L2S is held to, each with its measured value and whether it holds: yes-ratio
    within 5 points of the labels' share, F1 within 3 points of the reference organism's, side
    effects at most 2 points, F1 above the fixed mean-diff vector's."""
    l2s, fixed = _row(rows, "L2S"), _row(rows, "mean-diff")
    if l2s is None:
        return {}
    out = {"yes_ratio_gap": {"value": abs(l2s["yes_ratio"] - 0.5), "bar": 0.05}}
    ref = _row(reference, reference[0]["method"]) if reference else None
    if ref is not None:
        out["f1_gap_to_reference"] = {"value": ref["f1"] - l2s["f1"], "bar": 0.03}
    side = next((r for r in side_rows if r["method"] == "L2S"), {})
    changes = [abs(side[f"{k}_change"]) for k in SIDE_TYPES if side.get(f"{k}_change") is not None]
    if changes:
        out["side_effect"] = {"value": max(changes), "bar": 0.02}
    for item in out.values():
        item["holds"] = bool(item["value"] <= item["bar"])
    if fixed is not None:
        out["f1_over_mean_diff"] = {"value": l2s["f1"] - fixed["f1"], "bar": 0.0,
                                    "holds": bool(l2s["f1"] > fixed["f1"])}
    return out


def plot_comparison(result: dict, path) -> Path:
    """F1 and yes-ratio of every method over all splits (bars), with the reference organism's F1
    and the labels' yes share as lines."""
    from xlvlm.figures import new_figure, save_figure

    rows = [r for r in result["rows"] if r["split"] == "all"]
    names = [r["method"] for r in rows]
    fig, axes = new_figure(1, 2, figsize=(10, 3.6))
    for ax, metric, title in ((axes[0], "f1", "F1 (all splits)"), (axes[1], "yes_ratio", "yes-ratio (all splits)")):
        values = [100 * (r[metric] or 0) for r in rows]
        bars = ax.bar(range(len(rows)), values, color=["#888"] + ["#4a7ebb"] * (len(rows) - 1))
        for bar, value in zip(bars, values):
            ax.text(bar.get_x() + bar.get_width() / 2, value + 1, f"{value:.1f}", ha="center", fontsize=8)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 110)
        ax.set_title(title, fontsize=10)
    reference = [r for r in result.get("reference", []) if r["split"] == "all"]
    if reference:
        axes[0].axhline(100 * reference[0]["f1"], color="#c44", ls="--", lw=1,
                        label=f"{reference[0]['method']}")
        axes[0].legend(fontsize=8, loc="lower right")
    axes[1].axhline(50, color="#c44", ls="--", lw=1, label="labels yes (50%)")
    axes[1].legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)


def write_comparison(result: dict, out, command: str | None = None) -> Path:
    """Write ``result.json`` and its plot (and ``command.txt``) into ``out`` as one unit."""
    from xlvlm.io import atomic_write_text

    out = Path(out)
    with OutputUnit(out, RESULT_FILE, [PLOT_FILE, "command.txt"]) as unit:
        plot_comparison(result, unit.work / PLOT_FILE)
        if command:
            atomic_write_text(unit.work / "command.txt", command + "\n")
        atomic_write_json(unit.work / RESULT_FILE, result)
        unit.commit()
    return out / RESULT_FILE


def table_lines(result: dict) -> list[str]:
    """The comparison as plain-text lines (method x split: F1 / yes-ratio), then side effects."""
    def pct(value):
        return "-" if value is None else f"{100 * value:.1f}"

    rows = result["rows"] + result.get("reference", [])
    methods = list(dict.fromkeys(r["method"] for r in rows))
    width = max(len(m) for m in methods)
    lines = [f"{'method':<{width}}  " + "  ".join(f"{s + ' F1/yes':>20}" for s in SPLITS)]
    for method in methods:
        cells = []
        for split in SPLITS:
            row = _row(rows, method, split)
            cells.append(f"{pct(row and row['f1']) + ' / ' + pct(row and row['yes_ratio']):>20}")
        lines.append(f"{method:<{width}}  " + "  ".join(cells))
    def change(row, kind):
        value = row.get(f"{kind}_change")
        return "-" if value is None else f"{100 * value:+.1f}"

    side = [r for r in result.get("side_effects", []) if r["method"] != "none"]
    lines.append("side effects on shape/colour questions (accuracy change, points): " + "; ".join(
        f"{r['method']}: " + ", ".join(f"{kind} {change(r, kind)}" for kind in SIDE_TYPES) for r in side))
    return lines


__all__ = ["ComparisonSettings", "METHODS", "STAGE", "check_settings", "compare_steering", "write_comparison", "table_lines",
           "plot_comparison", "goals", "reframe"]
