"""The report's hallucination-steering section: escaped, validated, no model needed."""

from __future__ import annotations

import json

import pytest

from xlvlm.errors import XlvlmError
from xlvlm.io import RESULT_FILE, stage_result
from xlvlm.report import build_report


def _result(**changes):
    row = {"method": "L2S", "split": "all", "n": 12, "accuracy": 0.9, "precision": 0.8, "recall": 1.0,
           "f1": 0.89, "yes_ratio": 0.55}
    data = stage_result("hallucination-steering", model="hallucinating", n_train=24, n_test=12, n_side=4,
                        settings={"steer_layer": 3, "context_layer": 0, "positions": "from-last-prompt"},
                        rows=[row, dict(row, method="<script>alert(1)</script>", f1=0.5)],
                        side_effects=[{"method": "L2S", "shape": 0.9, "color": 1.0, "shape_change": -0.01,
                                       "color_change": 0.0}],
                        reference=[dict(row, method="original organism", f1=0.99)],
                        goals={"yes_ratio_gap": {"value": 0.05, "bar": 0.05, "holds": True}}, timing={},
                        training={})
    data.update(changes)
    return data


def _write(tmp_path, data):
    folder = tmp_path / "run" / "steer-hallucination"
    folder.mkdir(parents=True)
    (folder / RESULT_FILE).write_text(json.dumps(data))
    return tmp_path / "run"


def test_section_shows_methods_reference_side_effects_and_goals_escaped(tmp_path):
    page = build_report(_write(tmp_path, _result())).read_text()
    assert "Hallucination steering" in page and "original organism" in page and "yes_ratio_gap" in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "0.890" in page and "-0.010" in page


@pytest.mark.parametrize("change, field", [
    ({"rows": {"method": "L2S"}}, "'rows'"),
    ({"side_effects": [{"method": "L2S", "shape": "high"}]}, "'shape'"),
    ({"reference": [{"method": "x", "split": "all", "f1": [1]}]}, "'f1'"),
    ({"goals": ["holds"]}, "'goals'"),
])
def test_malformed_results_are_one_line_errors_naming_the_field(tmp_path, change, field):
    with pytest.raises(XlvlmError, match=f"malformed results.*{field}"):
        build_report(_write(tmp_path, _result(**change)))
