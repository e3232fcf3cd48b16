"""The hallucination-steering comparison on a tiny slice of the benchmark (the shipped organisms)."""

from __future__ import annotations

import json

import pytest

from xlvlm import organism
from xlvlm.apps.organism import hallucination_steering as hs
from xlvlm.apps.organism.pope import pope_benchmark
from xlvlm.evaluation.pope import pope_report
from xlvlm.io import RESULT_FILE
from xlvlm.report import build_report

from tests.organism.test_pope import CONFUSED

SETTINGS = hs.ComparisonSettings(train_images=10, test_images=5, side_questions=8, epochs=3, batch_size=32)


@pytest.fixture(scope="module")
def result():
    return hs.compare_steering(SETTINGS, confused=CONFUSED)


@pytest.fixture(scope="module")
def test_part():
    return pope_benchmark("test", seed=SETTINGS.seed, images=SETTINGS.test_images, confused=CONFUSED)


def _overall(rows, method):
    return next(r for r in rows if r["method"] == method and r["split"] == "all")


def test_every_method_and_split_is_scored_on_the_test_part(result, test_part):
    assert result["stage"] == hs.STAGE and result["n_test"] == len(test_part) == 5 * 12
    assert [(r["method"], r["split"]) for r in result["rows"]] == [(m, s) for m in hs.METHODS for s in hs.SPLITS]
    for row in result["rows"] + result["reference"]:
        assert row["n"] == (len(test_part) if row["split"] == "all" else len(test_part) // 3)
        assert all(0.0 <= row[m] <= 1.0 for m in hs.METRICS if row[m] is not None)


def test_no_steering_and_the_reference_match_plain_generation(result, test_part):
    """The unsteered row and the original organism's row, recomputed through VLM.predict."""
    for name, rows, method in (("hallucinating", result["rows"], "none"),
                               ("original", result["reference"], "original organism")):
        own = pope_report(organism.load(name).predict(test_part, max_new_tokens=2, batch_size=7))["overall"]
        row = _overall(rows, method)
        assert (row["f1"], row["yes_ratio"]) == (own["f1"], own["yes_ratio"])


def test_the_oracle_at_the_last_layer_answers_as_the_reframed_question(result, test_part):
    """Adding h(reframed) - h(plain) at the last decoder layer's last prompt position makes that
    state the reframed question's, so the first answer word is the reframed question's."""
    reframed = organism.load("hallucinating").predict([hs.reframe(s) for s in test_part], max_new_tokens=1)
    own = pope_report(reframed)["overall"]
    row = _overall(result["rows"], "P2S (oracle)")
    assert SETTINGS.steer_layer == organism.load("hallucinating").num_layers - 1
    assert (row["f1"], row["yes_ratio"]) == (own["f1"], own["yes_ratio"])


def test_side_effects_are_relative_to_no_steering_and_goals_follow_the_rows(result):
    side = {r["method"]: r for r in result["side_effects"]}
    assert side["none"]["shape_change"] == 0 and side["none"]["color_change"] == 0
    assert side["P2S (oracle)"]["shape"] is None  # no contrast for a shape/colour question
    for method in ("mean-diff", "L2S"):
        assert side[method]["color_change"] == pytest.approx(side[method]["color"] - side["none"]["color"])
    l2s, fixed = _overall(result["rows"], "L2S"), _overall(result["rows"], "mean-diff")
    goals = result["goals"]
    assert goals["yes_ratio_gap"]["value"] == pytest.approx(abs(l2s["yes_ratio"] - 0.5))
    assert goals["f1_over_mean_diff"]["holds"] == (l2s["f1"] > fixed["f1"])
    assert goals["f1_gap_to_reference"]["value"] == pytest.approx(
        _overall(result["reference"], "original organism")["f1"] - l2s["f1"])


def test_written_result_renders_and_the_table_lists_every_method(result, tmp_path):
    path = hs.write_comparison(result, tmp_path / "run", command="xlvlm organism steer-hallucination --out run")
    assert json.loads(path.read_text())["stage"] == hs.STAGE and (path.parent / hs.PLOT_FILE).is_file()
    page = build_report(tmp_path / "run").read_text()
    assert "Hallucination steering" in page and "L2S" in page and "data:image/png;base64," in page
    lines = hs.table_lines(result)
    assert all(any(line.startswith(m) for line in lines) for m in hs.METHODS)


def test_reframe_refuses_other_phrasings():
    from xlvlm.errors import XlvlmError

    assert hs.reframe({"id": "a", "prompt": "is there a red shape in the image?"})["prompt"] == \
        "does the image contain a red shape?"
    with pytest.raises(XlvlmError, match="not in the benchmark's phrasing"):
        hs.reframe({"id": "a", "prompt": "what color is the shape?"})


def test_cli_refuses_a_context_layer_after_the_steering_layer(tmp_path, capsys):
    from xlvlm.cli import main

    out = tmp_path / "run"
    assert main(["organism", "steer-hallucination", "--steer-layer", "1", "--context-layer", "2",
                 "--out", str(out), "--quiet"]) == 2
    assert "context layer 2 comes after the steering layer 1" in capsys.readouterr().err
    assert not (out / RESULT_FILE).exists()
