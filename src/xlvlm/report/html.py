"""``xlvlm report RUN_DIR``: one self-contained HTML page from whatever a run folder holds.

It renders every stage result (``result.json``, ``{"stage": ..., "version": ...}``) anywhere
under RUN_DIR with the renderer registered for its stage (:data:`RENDERERS`):
  concepts (+ concept_grid.png, patch_heatmaps.png)      from `xlvlm concepts`
  shift (+ shift_grid.png, shift_recovery.png, ...)       from `xlvlm shift`
  sweep (+ sweep.png)                                     from `xlvlm steer sweep`
  learned-steering (+ learning_curve.png)                 from `xlvlm steer learn`
  calibration (+ calibration.png)                         from `xlvlm steer calibrate`
  calibrated-l2s (+ calibrated_l2s.png)                   from `xlvlm organism calibrate-l2s`
  hallucination-steering (+ hallucination_steering.png)   from `xlvlm organism steer-hallucination`
  evaluate                                                from `xlvlm evaluate --out DIR/result.json`
  table (a titled table any stage can write)              e.g. the demo's caption steering
and for each the ``command.txt`` beside it (the exact command that produced it), plus an
optional ``notes.txt`` (plain text) at the top. Images are embedded as data URIs; the page
loads nothing from anywhere.

Only ``result.json`` files are stage results: the renderer comes from their ``stage``, never
from a file's name (a concept dictionary's ``concepts.json`` is no result, for one).

A run folder may come from someone else, so its files are untrusted: every value taken from
them is HTML-escaped, only regular files inside RUN_DIR are read (a symbolic link, e.g. a
"figure" pointing at /etc/passwd, is left out and said so), only real PNG files are embedded,
and notes are text, never markup (``notes.html`` is not included).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from pathlib import Path

from xlvlm.errors import XlvlmError, setting
from xlvlm.io import RESULT_FILE, RESULT_VERSION, atomic_write_text
from xlvlm.runs import inside, load_result, stage_results

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A second line of defence behind the escaping: the page may run no script and load nothing
# but its own inline style and data: images.
CSP = ('<meta http-equiv="Content-Security-Policy" '
       "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">")

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em} h3{font-size:1.05em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0} td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f4f4f4} td.l,th.l{text-align:left} figure{margin:1em 0} figcaption{font-size:.9em;color:#444}
img{max-width:100%;border:1px solid #eee} code,pre{background:#f6f6f6;font-size:.85em}
pre{padding:.5em;overflow-x:auto;white-space:pre-wrap} .what{color:#333;font-style:italic}
"""


def _esc(value) -> str:
    return html.escape(str(value))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value, spec: str = ".3f", scale: float = 1) -> str:
    """A number formatted with ``spec`` (times ``scale``); anything else as text, None as "-"."""
    if value is None:
        return "-"
    if _is_number(value) and math.isfinite(value):
        return format(value * scale, spec)
    return str(value)


def _num(value, spec: str = ".3f", scale: float = 1) -> str:
    """:func:`_number`, escaped for the page."""
    return _esc(_number(value, spec, scale))


def _image(path: Path, root: Path, caption: str) -> str:
    """The figure as a data URI, or a line saying why it was left out (a link, outside, not a
    PNG, or one a browser should not have to decode: :func:`~xlvlm.data.images.checked_figure`)."""
    from xlvlm.data.images import checked_figure

    if not inside(path, root):
        return (f"<p>({_esc(path.name)} not embedded: only PNG files inside the run folder are, "
                f"never links)</p>")
    try:
        data = checked_figure(path)
    except XlvlmError as exc:
        log.warning("%s", exc)
        return f"<p>({_esc(path.name)} not embedded: {_esc(exc)})</p>"
    encoded = base64.b64encode(data).decode("ascii")
    return (f'<figure><img alt="{_esc(path.name)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _figures(folder: Path, root: Path, figures) -> list[str]:
    return [_image(folder / name, root, caption) for name, caption in figures
            if (folder / name).is_file() or (folder / name).is_symlink()]


def _command(folder: Path, root: Path) -> str:
    file = folder / "command.txt"
    if inside(file, root):
        text = file.read_text(encoding="utf-8", errors="replace").strip()
        return f"<p>Produced by:</p><pre>{_esc(text)}</pre>"
    return "<p>Produced by: (no command.txt beside these files)</p>"


EXPLANATIONS = json.loads((Path(__file__).parent / "explanations.json").read_text(encoding="utf-8"))


def _explain(stage: str, **values) -> str:
    """The paragraph that says what a ``stage``'s section shows, with ``values`` escaped into it
    (the templates live in explanations.json, beside this file)."""
    return EXPLANATIONS[stage].format_map({key: _esc(value) for key, value in values.items()})


def _intro(title: str, folder: Path, root: Path, what: str) -> list[str]:
    """A section's heading (its title and folder), its explanation (``what``: HTML, values already
    escaped by the caller) and the command that produced it."""
    return [f"<h2>{_esc(title)}: {_esc(_relative(folder, root))}</h2>", f'<p class="what">{what}</p>',
            _command(folder, root)]


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value[:8])
    return str(value)


def _table(header: list[str], rows: list[list], left: int = 1) -> str:
    head = "".join(f'<th class="{"l" if i < left else ""}">{_esc(h)}</th>' for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{_esc(_fmt(c))}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _mapping(data: dict, key: str, path: Path) -> dict:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise XlvlmError(f"{path}: malformed results ({key!r} is not an object); rerun the stage that wrote it")
    return value


def _records(data: dict, key: str, path: Path) -> list[dict]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise XlvlmError(f"{path}: malformed results ({key!r} is not a list of objects); "
                         f"rerun the stage that wrote it")
    return value


def _relative(folder: Path, root: Path) -> str:
    return str(folder.relative_to(root)) if folder != root else "."


# stage name -> renderer(data, path of its result.json, run folder) -> HTML section
RENDERERS: dict = {}


def renderer(stage: str):
    """Register the function that renders results of ``stage``."""
    def register(function):
        RENDERERS[stage] = function
        return function
    return register


@renderer("concepts")
def concepts_section(data: dict, path: Path, root: Path) -> str:
    folder = path.parent
    s = _mapping(data, "settings", path)
    what = _explain("concepts", method=s.get("method"), n_concepts=s.get("n_concepts"), layer=s.get("layer"),
                    model=s.get("model") or "the model", n_train=s.get("n_train"), n_test=s.get("n_test"))
    parts = _intro("Concepts", folder, root, what)
    metrics = {k: v for k, v in _mapping(data, "metrics", path).items() if not isinstance(v, dict)}
    parts.append(_table(["metric", "value"], [[k, v] for k, v in metrics.items()]))
    rows = [[c.get("concept"), c.get("words", []), c.get("mas_answers", [])] for c in _records(data, "concepts", path)]
    parts.append(_table(["concept", "grounded words", "answers of its MAS"], rows, left=3))
    parts += _figures(folder, root, (
        ("concept_grid.png", "Each concept: its most activating images and its grounded words."),
        ("patch_heatmaps.png", "Where concepts fire: image-token states projected on the concept, "
                               "over the concept's top image.")))
    return "\n".join(parts)


@renderer("shift")
def shift_section(data: dict, path: Path, root: Path) -> str:
    folder = path.parent
    s, summary = _mapping(data, "settings", path), _mapping(data, "summary", path)
    what = _explain("shift", layer=s.get("layer"), aggregate=s.get("aggregate"),
                    unembedding=data.get("unembedding") or "no model (none given)")
    parts = _intro("Fine-tuning shift", folder, root, what)
    share = _num(summary.get('share_closer_by_cosine', 0), '.0f', 100)
    parts.append(f"<p>{_esc(summary.get('n_samples'))} matched samples; shifted concepts closer to their fine-tuned "
                 f"match than the original concepts for <b>{share}%</b> of "
                 f"concepts (mean cosine {_num(summary.get('mean_cos_original', 0))} → "
                 f"{_num(summary.get('mean_cos_shifted', 0))}).</p>")
    rows = []
    for c in _records(data, "concepts", path):
        stats = c.get("stats") if isinstance(c.get("stats"), dict) else {}
        rows.append([c.get("concept"), c.get("matched_finetuned"), c.get("cos_original"), c.get("cos_shifted"),
                     c.get("l2_improvement_normalised"), stats.get("n"), stats.get("mean_cosine_to_mean"),
                     c.get("words_shift", [])])
    parts.append(_table(["concept", "matched ft", "cos orig→ft", "cos shifted→ft", "L2 improvement (norm.)",
                         "samples", "shift coherence", "words of the shift vector"], rows))
    parts += _figures(folder, root, (
        ("shift_grid.png", "Original, shifted and matched fine-tuned concepts side by side."),
        ("shift_recovery.png", "Recovery: cosine of original and shifted concepts to their match."),
        ("shift_coherence.png", "Coherence of each concept's per-sample shifts.")))
    return "\n".join(parts)


@renderer("sweep")
def sweep_section(data: dict, path: Path, root: Path) -> str:
    from xlvlm.steer.settings import describe_settings

    folder = path.parent
    rows = _records(data, "rows", path)
    settings = _mapping(data, "settings", path)
    how = _esc(describe_settings(settings)) if settings else ""
    parts = [f"<h2>Steering sweep: {_esc(_relative(folder, root))}</h2>"]
    if "source" not in data or "target" not in data:  # a sweep scored by the caller's own scorer
        fields = list(dict.fromkeys(k for r in rows for k, v in r.items() if k not in ("method", "layer", "alpha")
                                    and (v is None or isinstance(v, (str, int, float)))))
        parts += [f'<p class="what">Steering with every vector at every alpha, each run scored by the caller\'s '
                  f"scorer (one row per vector and alpha). {how}</p>", _command(folder, root),
                  _table(["method", "layer", "alpha"] + fields,
                         [[r.get("method"), r.get("layer"), r.get("alpha")] + [r.get(f) for f in fields] for r in rows],
                         left=2)]
        return "\n".join(parts)
    parts += [f'<p class="what">Steering "{_esc(data.get("source"))}" → "{_esc(data.get("target"))}": for every method, '
              f"layer and alpha, the share of source questions answered with the target (success) against what moved "
              f"elsewhere (side effects on the other answer types, relative to the unsteered model). {how}</p>",
              _command(folder, root)]
    per_type = [r.get("per_type") if isinstance(r.get("per_type"), dict) else {} for r in rows]
    types = sorted({str(t) for p in per_type for t in p})
    table_rows = [[r.get("method"), r.get("layer"), r.get("alpha"), r.get("success"), r.get("side_accuracy_change"),
                   r.get("side_unchanged")] + [p.get(t) for t in types] for r, p in zip(rows, per_type)]
    parts.append(_table(["method", "layer", "alpha", "success", "side acc. change", "side unchanged"]
                        + [f"acc {t}" for t in types], table_rows, left=2))
    parts += _figures(folder, root, (("sweep.png", "Success against side effects; labels are alphas."),))
    return "\n".join(parts)


@renderer("learned-steering")
def learned_steering_section(data: dict, path: Path, root: Path) -> str:
    """``xlvlm steer learn``: what g maps, and how well it predicts held-out vectors against the
    fixed mean vector."""
    folder = path.parent
    s, t = _mapping(data, "settings", path), _mapping(data, "training", path)
    what = _explain("learned-steering", hidden=s.get("hidden"), steer_layer=s.get("steer_layer"),
                    context_layer=s.get("context_layer"), n_train=t.get("n_train"), model=s.get("model") or "the model",
                    n_val=t.get("n_val"), best_epoch=t.get("best_epoch"), seconds=_number(t.get("seconds"), ".1f"))
    parts = _intro("Learned steering (L2S)", folder, root, what)
    rows = []
    for part, label in (("train", "train"), ("val", "held out")):
        if f"{part}_cosine" in t:
            rows.append([label, t.get(f"{part}_cosine"), t.get(f"mean_vector_{part}_cosine"),
                         t.get(f"{part}_relative_error"), t.get(f"mean_vector_{part}_relative_error"),
                         t.get(f"{part}_loss")])
    parts.append(_table(["samples", "cosine: g", "cosine: mean vector", "relative error: g",
                         "relative error: mean vector", "loss: g"], rows))
    shown = ("context", "shifts", "epochs", "lr", "batch_size", "val_fraction", "cosine_weight", "seed")
    parts.append(_table(["setting", "value"], [[k, s.get(k)] for k in shown if k in s]))
    parts += _figures(folder, root, (("learning_curve.png", "Loss per epoch (train, held out) and the held-out "
                                                            "cosine between predicted and true vectors."),))
    return "\n".join(parts)


@renderer("calibration")
def calibration_section(data: dict, path: Path, root: Path) -> str:
    """``xlvlm steer calibrate``: the chosen alpha, and every (candidate, alpha) tried."""
    folder = path.parent
    chosen, s, on = _mapping(data, "chosen", path), _mapping(data, "settings", path), _mapping(data, "on", path)
    what = _explain("calibration", objective=s.get("objective"), limit=_number(s.get("max_side_effect"), ".1f", 100),
                    n_samples=on.get("n_samples"), data=on.get("data"), n_control=on.get("n_control"),
                    candidate=chosen.get("candidate"), alpha=chosen.get("alpha"))
    parts = _intro("Calibration", folder, root, what)
    rows = _records(data, "rows", path)
    parts.append(_table(["candidate", "alpha", "score", "yes-ratio", "side effect", "within the limit"],
                        [[r.get("candidate"), r.get("alpha"), r.get("score"), r.get("yes_ratio"), r.get("side_effect"),
                          r.get("allowed")] for r in rows], left=1))
    parts += _figures(folder, root, (("calibration.png", "Score (solid) and side effect (dashed) against alpha; "
                                                          "grey: the side-effect limit; circled: the choice."),))
    return "\n".join(parts)


@renderer("calibrated-l2s")
def calibrated_l2s_section(data: dict, path: Path, root: Path) -> str:
    """The organism's calibrated L2S per contrast: chosen alpha and held-out test scores."""
    folder = path.parent
    s, none = _mapping(data, "settings", path), _mapping(data, "none", path)
    what = _explain("calibrated-l2s", n_train=data.get("n_train"), n_calibration=data.get("n_calibration"),
                    n_test=data.get("n_test"), limit=_number(s.get("max_side_effect"), ".1f", 100))
    parts = _intro("Calibrated learned steering", folder, root, what)
    rows = [["none", None, 0, none.get("f1"), none.get("yes_ratio"), None]]
    for r in _records(data, "rows", path):
        test = r.get("test") if isinstance(r.get("test"), dict) else {}
        rows.append([r.get("contrast"), r.get("vector_norm_mean"), r.get("alpha"), test.get("f1"), test.get("yes_ratio"),
                     r.get("test_side_effect")])
    parts.append(_table(["contrast", "mean vector norm", "alpha", "test F1", "test yes-ratio", "test side effect"],
                        rows, left=1))
    parts += _figures(folder, root, (("calibrated_l2s.png", "Per contrast: F1, yes-ratio and side effect on the "
                                                             "calibration images against alpha; dotted: the choice."),))
    return "\n".join(parts)


@renderer("table")
def table_section(data: dict, path: Path, root: Path) -> str:
    """A titled table that a stage describes itself (title, about, header, rows)."""
    folder = path.parent
    header = data.get("header") or []
    rows = data.get("rows") or []
    if not (isinstance(header, list) and isinstance(rows, list) and all(isinstance(r, list) for r in rows)):
        raise XlvlmError(f"{path}: malformed results ('header' and 'rows' must be lists); rerun the stage that wrote it")
    return "\n".join(_intro(str(data.get("title") or "Results"), folder, root, _esc(data.get("about") or ""))
                     + [_table([str(h) for h in header], rows, left=1)])


@renderer("hallucination-steering")
def hallucination_steering_section(data: dict, path: Path, root: Path) -> str:
    """The organism's hallucination-steering comparison: method x split POPE metrics, the side
    effects on shape/colour questions, the goals L2S is held to, and the plot."""
    _check_hallucination_steering(data, path)
    folder = path.parent
    s = _mapping(data, "settings", path)
    what = _explain("hallucination-steering", model=data.get("model"), n_test=data.get("n_test"),
                    n_train=data.get("n_train"), steer_layer=s.get("steer_layer"),
                    context_layer=s.get("context_layer"), positions=s.get("positions"))
    parts = _intro("Hallucination steering", folder, root, what)
    rows = data.get("rows", []) + data.get("reference", [])
    parts.append(_table(["method", "split"] + [m.replace("_", "-") for m in POPE_METRICS],
                        [[r.get("method"), r.get("split")] + [r.get(m) for m in POPE_METRICS] for r in rows], left=2))
    side = data.get("side_effects", [])
    parts.append(_table(["method", "shape accuracy", "shape change", "colour accuracy", "colour change"],
                        [[r.get("method"), r.get("shape"), r.get("shape_change"), r.get("color"),
                          r.get("color_change")] for r in side]))
    goals = _mapping(data, "goals", path)
    if goals:
        parts.append(_table(["goal (L2S)", "measured", "bar", "holds"],
                            [[name, g.get("value"), g.get("bar"), g.get("holds")] for name, g in goals.items()
                             if isinstance(g, dict)]))
    parts += _figures(folder, root, (("hallucination_steering.png", "F1 and yes-ratio over all splits, per method."),))
    return "\n".join(parts)


POPE_METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")


def _check_hallucination_steering(data: dict, path: Path) -> None:
    """Refuse a hallucination-steering result of another shape (a one-line error naming the field)."""
    def bad(what: str):
        raise XlvlmError(f"{path}: malformed results ({what}); rerun the stage that wrote it")

    for key in ("rows", "side_effects", "reference"):
        _records(data, key, path)
    for row in data.get("rows", []) + data.get("reference", []):
        if not isinstance(row.get("method"), str) or not isinstance(row.get("split"), str):
            bad("a row without a method or split name")
        for metric in POPE_METRICS:
            value = row.get(metric)
            if value is not None and not _is_number(value):
                bad(f"{metric!r} of {str(row.get('method'))[:40]!r} is not a number")
    for row in data.get("side_effects", []):
        for metric in ("shape", "color", "shape_change", "color_change"):
            if row.get(metric) is not None and not _is_number(row.get(metric)):
                bad(f"{metric!r} of {str(row.get('method'))[:40]!r} is not a number")
    for key in ("settings", "goals", "timing", "training"):
        _mapping(data, key, path)


@renderer("evaluate")
def evaluate_section(data: dict, path: Path, root: Path) -> str:
    """The scalar scores of ``xlvlm evaluate`` (the full result stays in the file)."""
    folder = path.parent
    scores = [[key, value] for key, value in data.items()
              if key not in ("stage", "version", "outputs") and (_is_number(value) or isinstance(value, str))]
    what = f'Scores of the predictions (task {_esc(data.get("task", "vqa"))}).'
    return "\n".join(_intro("Evaluation", folder, root, what) + [_table(["score", "value"], scores)])


def _notes(root: Path) -> str:
    """``notes.txt`` as escaped paragraphs (blank lines separate them); never markup."""
    if (root / "notes.html").exists():
        log.warning("%s: not included (notes are plain text now: write notes.txt)", root / "notes.html")
    file = root / "notes.txt"
    if not inside(file, root):
        return ""
    text = file.read_text(encoding="utf-8", errors="replace")
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
    return "".join(f"<p>{_esc(p)}</p>" for p in paragraphs)


def _section(path: Path, root: Path) -> str:
    """The HTML section of one result file, by its stage's renderer."""
    data = load_result(path)
    stage, version = data.get("stage"), data.get("version")
    if stage not in RENDERERS:
        raise XlvlmError(f"{path}: unknown stage {str(stage)[:40]!r} (this xlvlm renders "
                         f"{', '.join(sorted(RENDERERS))}); rerun the stage that wrote it, or update xlvlm")
    if not isinstance(version, int) or isinstance(version, bool) or version > RESULT_VERSION:
        raise XlvlmError(f"{path}: result format version {str(version)[:20]!r}, this xlvlm reads up to "
                         f"{RESULT_VERSION}; update xlvlm or rerun the stage")
    return RENDERERS[stage](data, path, root)


def report_page(run_dir, title: str | None = None) -> str:
    """The report of ``run_dir`` as one HTML page (what :func:`build_report` writes)."""
    root = Path(run_dir)
    if not root.is_dir():
        raise XlvlmError(f"{root}: run folder not found")
    sections = [_section(path, root) for path in stage_results(root)]
    if not sections:
        raise XlvlmError(f"{root}: no stage outputs found ({RESULT_FILE}); "
                         f"run `xlvlm concepts|shift|steer sweep --out {root}/...` first")
    title = title or f"xlvlm report: {root.name}"
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>{CSP}<title>{_esc(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{_esc(title)}</h1>{_notes(root)}"
            + "\n".join(sections) + "</body></html>\n")


def _built_here(path: Path) -> bool:
    """Whether ``path`` starts as the pages :func:`report_page` writes (its header and policy)."""
    with open(path, "rb") as handle:
        head = handle.read(len(CSP) + 200).decode("utf-8", "replace")
    return head.startswith("<!doctype html><html lang=en><head><meta charset=utf-8>") and CSP in head


def build_report(run_dir, out=None, title: str | None = None, overwrite: bool = False) -> Path:
    """Write ``run_dir/report.html`` (or ``out``) from every stage result found under it.

    A report this function built before is rebuilt (it is derived from the folder); any other
    file at that path is refused unless ``overwrite=True``."""
    out = Path(out) if out else Path(run_dir) / "report.html"
    if out.is_file() and not overwrite and not _built_here(out):
        raise XlvlmError(f"{out}: exists and is not a report xlvlm built; move it or pass {setting('overwrite', True)}")
    page = report_page(run_dir, title)
    atomic_write_text(out, page)
    return out
