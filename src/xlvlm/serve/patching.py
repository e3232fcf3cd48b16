"""The Patching tab's data: every ``xlvlm patch`` result of the run folder, per pair its
recovery matrix and figures, read with the run folder's own rules (values are the page's user
data: only numbers, strings and the figures inside RUN_DIR pass)."""

from __future__ import annotations

from xlvlm.serve.runfolder import RunFolder, _number, _text, _words

#: Pairs listed per result (the tab picks one at a time; the files keep every pair).
MAX_PAIRS = 200


def _matrix(value, rows: int) -> list[list]:
    """A (sites, cells) matrix of finite numbers (anything else as None), or [] when malformed."""
    if not isinstance(value, list) or len(value) != rows or not all(isinstance(r, list) for r in value):
        return []
    return [[_number(v) for v in row] for row in value]


def _figure_name(figures: dict, kind: str, index: int):
    names = figures.get(kind) if isinstance(figures.get(kind), list) else []
    return names[index] if index < len(names) and isinstance(names[index], str) else None


def patching_results(run: RunFolder) -> list[dict]:
    """Per patch result: folder, method, metric, positions, sites, mean figure, and its pairs
    (id, prompt, answers, clean and corrupted metric, labels, recovery, figures)."""
    out = []
    for folder, data in run._stage("patch"):
        sites = _words(data.get("sites"))
        figures = data.get("figures") if isinstance(data.get("figures"), dict) else {}
        pairs = []
        for i, pair in enumerate(p for p in (data.get("pairs") or [])[:MAX_PAIRS] if isinstance(p, dict)):
            names = [(name, caption) for name, caption in ((_figure_name(figures, "pairs", i), "recovery per site and position"),
                                                          (_figure_name(figures, "grids", i), "recovery per image cell"))
                     if name]
            pairs.append({"id": _text(pair.get("id")), "prompt": _text(pair.get("prompt")),
                          "answers": _words(pair.get("answers")), "clean": _number(pair.get("clean")),
                          "corrupted": _number(pair.get("corrupted")), "labels": _words(pair.get("labels")),
                          "recovery": _matrix(pair.get("recovery"), len(sites)),
                          "figures": run.figures(folder, names)})
        out.append({"folder": run.relative(folder), "method": _text(data.get("method")),
                    "metric": _text(data.get("metric")), "positions": _text(data.get("positions")),
                    "sites": sites, "pairs": pairs,
                    "figures": run.figures(folder, [("recovery.png", "mean recovery over the pairs")])})
    return out
