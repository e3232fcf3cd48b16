"""``xlvlm report RUN_DIR``: one self-contained HTML page from whatever a run folder holds.

It looks for the outputs of each stage anywhere under RUN_DIR:
  concepts.json (+ concept_grid.png, patch_heatmaps.png)      from `xlvlm concepts`
  shift.json (+ shift_grid.png, shift_recovery.png, ...)       from `xlvlm shift`
  sweep.json (+ sweep.png)                                     from `xlvlm steer sweep`
  evaluation.json                                              from `xlvlm evaluate --out`
and for each the ``command.txt`` beside it (the exact command that produced it). Images are
embedded as data URIs; the page loads nothing from anywhere.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from xlvlm.errors import XlvlmError
from xlvlm.io import atomic_write_text, check_outputs

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


def _image(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{_esc(path.name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _command(folder: Path) -> str:
    file = folder / "command.txt"
    if file.is_file():
        return f"<p>Produced by:</p><pre>{_esc(file.read_text(encoding='utf-8').strip())}</pre>"
    return "<p>Produced by: (no command.txt beside these files)</p>"


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


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise XlvlmError(f"{path}: unreadable results ({exc}); rerun the stage that wrote it")


def _relative(folder: Path, root: Path) -> str:
    return str(folder.relative_to(root)) if folder != root else "."


def concepts_section(path: Path, root: Path) -> str:
    data = _load(path)
    folder = path.parent
    s = data.get("settings", {})
    parts = [f"<h2>Concepts: {_esc(_relative(folder, root))}</h2>",
             f'<p class="what">A {s.get("method")} dictionary of {s.get("n_concepts")} concepts learnt on layer '
             f'{_esc(s.get("layer"))} of {_esc(s.get("model") or "the model")}, from {s.get("n_train")} samples; each '
             f"concept is grounded in words (unembedded through the final norm and LM head) and in its most "
             f"activating samples (MAS). Scores are measured on {s.get('n_test')} held-out samples and set "
             f"against words decoded from random directions.</p>", _command(folder)]
    metrics = {k: v for k, v in data.get("metrics", {}).items() if not isinstance(v, dict)}
    parts.append(_table(["metric", "value"], [[k, v] for k, v in metrics.items()]))
    rows = [[c["concept"], c.get("words", []), c.get("mas_answers", [])] for c in data.get("concepts", [])]
    parts.append(_table(["concept", "grounded words", "answers of its MAS"], rows, left=3))
    for name, caption in (("concept_grid.png", "Each concept: its most activating images and its grounded words."),
                          ("patch_heatmaps.png", "Where concepts fire: image-token states projected on the concept, "
                                                 "over the concept's top image.")):
        if (folder / name).is_file():
            parts.append(_image(folder / name, caption))
    return "\n".join(parts)


def shift_section(path: Path, root: Path) -> str:
    data = _load(path)
    folder = path.parent
    s, summary = data.get("settings", {}), data.get("summary", {})
    parts = [f"<h2>Fine-tuning shift: {_esc(_relative(folder, root))}</h2>",
             f'<p class="what">Concepts of the original model at layer {_esc(s.get("layer"))}; each sample is assigned '
             f"to a concept and the {s.get('aggregate')} of its fine-tuned minus original representation is the "
             f"concept's shift vector. Shifted concepts (original + shift) are compared with the fine-tuned model's own "
             f"concepts, matched by the Hungarian algorithm. Words are unembedded with "
             f"{_esc(data.get('unembedding') or 'no model (none given)')}.</p>", _command(folder),
             f"<p>{summary.get('n_samples')} matched samples; shifted concepts closer to their fine-tuned match than the "
             f"original concepts for <b>{100 * summary.get('share_closer_by_cosine', 0):.0f}%</b> of concepts (mean "
             f"cosine {summary.get('mean_cos_original', 0):.3f} → {summary.get('mean_cos_shifted', 0):.3f}).</p>"]
    rows = [[c["concept"], c.get("matched_finetuned"), c.get("cos_original"), c.get("cos_shifted"),
             c.get("l2_improvement_normalised"), (c.get("stats") or {}).get("n"),
             (c.get("stats") or {}).get("mean_cosine_to_mean"), c.get("words_shift", [])]
            for c in data.get("concepts", [])]
    parts.append(_table(["concept", "matched ft", "cos orig→ft", "cos shifted→ft", "L2 improvement (norm.)",
                         "samples", "shift coherence", "words of the shift vector"], rows))
    for name, caption in (("shift_grid.png", "Original, shifted and matched fine-tuned concepts side by side."),
                          ("shift_recovery.png", "Recovery: cosine of original and shifted concepts to their match."),
                          ("shift_coherence.png", "Coherence of each concept's per-sample shifts.")):
        if (folder / name).is_file():
            parts.append(_image(folder / name, caption))
    return "\n".join(parts)


def sweep_section(path: Path, root: Path) -> str:
    from xlvlm.steer.run import describe_settings

    data = _load(path)
    folder = path.parent
    rows = data.get("rows", [])
    parts = [f"<h2>Steering sweep: {_esc(_relative(folder, root))}</h2>",
             f'<p class="what">Steering "{_esc(data.get("source"))}" → "{_esc(data.get("target"))}": for every method, '
             f"layer and alpha, the share of source questions answered with the target (success) against what moved "
             f"elsewhere (side effects on the other answer types, relative to the unsteered model). "
             f"{_esc(describe_settings(data['settings'])) if data.get('settings') else ''}</p>",
             _command(folder)]
    types = sorted({t for r in rows for t in r.get("per_type", {})})
    table_rows = [[r["method"], r["layer"], r["alpha"], r.get("success"), r.get("side_accuracy_change"),
                   r.get("side_unchanged")] + [r.get("per_type", {}).get(t) for t in types] for r in rows]
    parts.append(_table(["method", "layer", "alpha", "success", "side acc. change", "side unchanged"]
                        + [f"acc {t}" for t in types], table_rows, left=2))
    if (folder / "sweep.png").is_file():
        parts.append(_image(folder / "sweep.png", "Success against side effects; labels are alphas."))
    return "\n".join(parts)


def caption_section(path: Path, root: Path) -> str:
    data = _load(path)
    folder = path.parent
    parts = [f"<h2>Caption steering: {_esc(_relative(folder, root))}</h2>",
             f'<p class="what">The mean shift of the state at the caption\'s first token "a" (original → fine-tuned, layer '
             f"{_esc(data.get('layer'))}) added to the original model while it captions {data.get('n')} test images: "
             f"how often its captions name a colour, and whether they name the right colour and shape.</p>",
             _command(folder)]
    rows = [[f"original, alpha {r['alpha']:g}", r.get("names_color"), r.get("color_correct"), r.get("shape_correct"),
             r.get("examples", [])] for r in data.get("rows", [])]
    ft = data.get("finetuned") or {}
    rows.append(["fine-tuned model (reference)", ft.get("names_color"), ft.get("color_correct"), ft.get("shape_correct"), []])
    parts.append(_table(["captions by", "name a colour", "right colour", "right shape", "examples"], rows, left=1))
    return "\n".join(parts)


def build_report(run_dir, out=None, title: str | None = None) -> Path:
    """Write ``run_dir/report.html`` (or ``out``) from every stage's outputs found under it."""
    root = Path(run_dir)
    if not root.is_dir():
        raise XlvlmError(f"{root}: run folder not found")
    sections = []
    for name, build in (("concepts.json", concepts_section), ("shift.json", shift_section),
                        ("sweep.json", sweep_section), ("caption_steer.json", caption_section)):
        for path in sorted(root.rglob(name)):
            if not check_outputs(path):  # inside an unfinished rerun's work folder
                continue
            # A saved concept dictionary also has a concepts.json (its metadata, with a "format"
            # field): it is an input of a stage, not a stage's results.
            if name == "concepts.json" and "format" in _load(path):
                continue
            sections.append(build(path, root))
    notes = root / "notes.html"
    if not sections:
        raise XlvlmError(f"{root}: no stage outputs found (concepts.json, shift.json, sweep.json, caption_steer.json); "
                         f"run `xlvlm concepts|shift|steer sweep --out {root}/...` first")
    title = title or f"xlvlm report: {root.name}"
    intro = notes.read_text(encoding="utf-8") if notes.is_file() else ""
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_esc(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{_esc(title)}</h1>{intro}"
            + "\n".join(sections) + "</body></html>\n")
    out = Path(out) if out else root / "report.html"
    atomic_write_text(out, page)
    return out
