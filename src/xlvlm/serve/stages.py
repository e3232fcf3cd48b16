"""The explorer's stage tabs beyond concepts, shift and sweeps, as plain data for the page.

Each tab (:data:`TABS`) gathers the stage results of some stages (read by
:class:`~xlvlm.serve.runfolder.RunFolder` through :mod:`xlvlm.runs`) into sections
``{"stage", "folder", "title", "about", "tables": [{"caption", "columns", "rows"}], "figures"}``:
numbers as finite numbers, everything else as strings (the page shows them with
``textContent``), figures only where they pass the server's figure check. A result of the wrong
shape is a section with ``error`` (one line) instead of tables; a result.json that cannot be read
at all is listed, with its one-line reason, in every one of these tabs (its stage is unknown).
"""

from __future__ import annotations

import math

from xlvlm.errors import XlvlmError

POPE_METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")
UNREADABLE = "unreadable"


def _cell(value):
    """A table cell: a finite number, a string, or None (nested values and NaN are not shown)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    return value if isinstance(value, str) else None


def _mapping(data: dict, key: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise XlvlmError(f"malformed results ({key!r} is not an object); rerun the stage that wrote it")
    return value


def _records(data: dict, key: str) -> list[dict]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise XlvlmError(f"malformed results ({key!r} is not a list of objects); rerun the stage that wrote it")
    return value


def _table(caption: str, columns: list[str], rows: list[list]) -> dict:
    return {"caption": caption, "columns": columns,
            "rows": [{c: _cell(v) for c, v in zip(columns, row)} for row in rows]}


def _settings_table(settings: dict, caption: str = "settings") -> dict:
    return _table(caption, ["setting", "value"], [[k, v] for k, v in settings.items() if _cell(v) is not None])


def learned_steering(data: dict) -> dict:
    s, t = _mapping(data, "settings"), _mapping(data, "training")
    rows = [[label, t.get(f"{part}_cosine"), t.get(f"mean_vector_{part}_cosine"), t.get(f"{part}_relative_error"),
             t.get(f"mean_vector_{part}_relative_error"), t.get(f"{part}_loss")]
            for part, label in (("train", "train"), ("val", "held out")) if f"{part}_cosine" in t]
    tables = [_table("how well g predicts each sample's vector, against the fixed mean vector",
                     ["samples", "cosine: g", "cosine: mean vector", "relative error: g",
                      "relative error: mean vector", "loss: g"], rows),
              _settings_table(s)]
    calibration = _mapping(data, "calibration")
    if calibration:
        tables.append(_settings_table(calibration, "calibrated alpha (stored in learned.safetensors)"))
    return {"title": "Learned steering (L2S)", "tables": tables,
            "about": f"g maps the state at layer {_cell(s.get('context_layer'))} to a steering vector added at "
                     f"layer {_cell(s.get('steer_layer'))}.",
            "figures": (("learning_curve.png", "Loss per epoch (train, held out) and the held-out cosine."),
                        ("calibration.png", "Score and side effect against alpha (calibration after training)."))}


def calibration(data: dict) -> dict:
    chosen, on = _mapping(data, "chosen"), _mapping(data, "on")
    columns = ["candidate", "alpha", "score", "yes_ratio", "side_effect", "allowed"]
    return {"title": "Calibration", "about": f"alpha chosen on {_cell(on.get('data')) or 'held-out samples'}: the best "
                                             "score within the side-effect limit.",
            "tables": [_settings_table(chosen, "the choice"), _settings_table(_mapping(data, "settings")),
                       _table("every candidate and alpha tried", columns,
                              [[r.get(c) for c in columns] for r in _records(data, "rows")])],
            "figures": (("calibration.png", "Score (solid) and side effect (dashed) against alpha; circled: the "
                                            "choice."),)}


def calibrated_l2s(data: dict) -> dict:
    none = _mapping(data, "none")
    rows = [["none", None, 0, none.get("f1"), none.get("yes_ratio"), None]]
    for r in _records(data, "rows"):
        test = r.get("test") if isinstance(r.get("test"), dict) else {}
        rows.append([r.get("contrast"), r.get("vector_norm_mean"), r.get("alpha"), test.get("f1"),
                     test.get("yes_ratio"), r.get("test_side_effect")])
    return {"title": "Calibrated learned steering", "about": "Per contrast: the alpha chosen on calibration images "
                                                             "and the held-out test scores.",
            "tables": [_table("per contrast", ["contrast", "mean vector norm", "alpha", "test F1", "test yes-ratio",
                                               "test side effect"], rows)],
            "figures": (("calibrated_l2s.png", "F1, yes-ratio and side effect against alpha; dotted: the choice."),)}


def hallucination_steering(data: dict) -> dict:
    rows = _records(data, "rows") + _records(data, "reference")
    side = _records(data, "side_effects")
    goals = _mapping(data, "goals")
    tables = [_table("POPE per method and split", ["method", "split", *POPE_METRICS],
                     [[r.get("method"), r.get("split")] + [r.get(m) for m in POPE_METRICS] for r in rows]),
              _table("side effects on shape and colour questions",
                     ["method", "shape", "shape_change", "color", "color_change"],
                     [[r.get(c) for c in ("method", "shape", "shape_change", "color", "color_change")] for r in side])]
    if goals:
        tables.append(_table("goals (L2S)", ["goal", "measured", "bar", "holds"],
                             [[name, g.get("value"), g.get("bar"), g.get("holds")] for name, g in goals.items()
                              if isinstance(g, dict)]))
    return {"title": "Hallucination steering", "tables": tables,
            "about": f"Steering {_cell(data.get('model')) or 'the model'} against hallucinated 'yes' answers, "
                     f"on {_cell(data.get('n_test'))} test questions.",
            "figures": (("hallucination_steering.png", "F1 and yes-ratio over all splits, per method."),)}


def table(data: dict) -> dict:
    header, rows = data.get("header") or [], data.get("rows") or []
    if not (isinstance(header, list) and isinstance(rows, list) and all(isinstance(r, list) for r in rows)):
        raise XlvlmError("malformed results ('header' and 'rows' must be lists); rerun the stage that wrote it")
    columns = [str(h) for h in header]
    return {"title": str(data.get("title") or "Results"), "about": _cell(data.get("about")) or "",
            "tables": [_table("", columns, rows)], "figures": ()}


def evaluate(data: dict) -> dict:
    scores = [[k, v] for k, v in data.items() if k not in ("stage", "version", "outputs") and _cell(v) is not None]
    return {"title": "Evaluation", "about": f"Scores of the predictions (task {_cell(data.get('task')) or 'vqa'}).",
            "tables": [_table("scores", ["score", "value"], scores)], "figures": ()}


#: tab name -> {stage name: what reads its result}
TABS = {"learned": {"learned-steering": learned_steering},
        "hallucination": {"hallucination-steering": hallucination_steering},
        "calibration": {"calibration": calibration, "calibrated-l2s": calibrated_l2s},
        "evaluation": {"table": table, "evaluate": evaluate}}


def tab_sections(run, tab: str) -> list[dict]:
    """The sections of ``tab`` for the :class:`~xlvlm.serve.runfolder.RunFolder` ``run``."""
    if tab not in TABS:
        raise XlvlmError(f"{tab[:40]!r}: no such tab; use one of {', '.join(TABS)}")
    out = []
    for stage, folder, data in run.results:
        where = {"stage": stage, "folder": run.relative(folder)}
        if stage == UNREADABLE:
            out.append({**where, "error": str(data.get("error"))})
        elif stage in TABS[tab]:
            try:
                section = TABS[tab][stage](data)
            except XlvlmError as exc:
                out.append({**where, "error": f"{where['folder']}/result.json: {exc}"})
                continue
            out.append({**where, **section, "figures": run.figures(folder, section["figures"])})
    return out
