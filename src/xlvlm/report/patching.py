"""The report's section for activation patching results (stage ``patch``, from ``xlvlm patch``)."""

from __future__ import annotations

from pathlib import Path

from xlvlm.report.html import _esc, _explain, _figures, _intro, _records, _table, renderer

#: Pairs whose own figures the report shows (the result lists them all).
REPORT_PAIRS = 8


def _matrix_rows(sites: list, matrix) -> list[list]:
    """Rows of a (sites, cells) recovery table, or none when the matrix is not one."""
    if not isinstance(matrix, list) or len(matrix) != len(sites) or not all(isinstance(r, list) for r in matrix):
        return []
    return [[site, *row] for site, row in zip(sites, matrix)]


@renderer("patch")
def patching_section(data: dict, path: Path, root: Path) -> str:
    folder = path.parent
    pairs = _records(data, "pairs", path)
    sites = [str(s) for s in data.get("sites") or []] if isinstance(data.get("sites"), list) else []
    what = _explain("patch", method=data.get("method"), metric=data.get("metric"), n_pairs=len(pairs),
                    positions=data.get("positions"), model=data.get("model") or "the model")
    parts = _intro("Activation patching", folder, root, what)
    labels = data.get("labels") if isinstance(data.get("labels"), list) else None
    rows = _matrix_rows(sites, data.get("mean_recovery")) if labels else []
    if rows and len(labels) <= 24:
        parts.append("<p>Mean recovery over the pairs (sites down, positions across):</p>")
        parts.append(_table(["site", *[str(label) for label in labels]], rows))
    summary = [[p.get("id"), p.get("prompt"), " vs ".join(str(a) for a in p.get("answers") or []),
                p.get("clean"), p.get("corrupted")] for p in pairs]
    parts.append(_table(["pair", "prompt", "answers", "clean metric", "corrupted metric"], summary, left=3))
    figures = data.get("figures") if isinstance(data.get("figures"), dict) else {}
    shown = [("recovery.png", "Recovery heatmap: sites (layers) down, positions across.")]
    for kind, caption in (("pairs", "recovery per site and position"), ("grids", "recovery per image cell")):
        names = figures.get(kind) if isinstance(figures.get(kind), list) else []
        for name, pair in zip(names[:REPORT_PAIRS], pairs):
            shown.append((str(name), f"Pair {pair.get('id')}: {caption}."))
    parts += _figures(folder, root, shown)
    if len(pairs) > REPORT_PAIRS:
        parts.append(f"<p>Figures of the first {REPORT_PAIRS} of {len(pairs)} pairs; {_esc(folder.name)} holds "
                     f"all of them.</p>")
    return "\n".join(parts)
