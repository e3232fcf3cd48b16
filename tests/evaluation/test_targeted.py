import pytest

from xlvlm.errors import XlvlmError
from xlvlm.evaluation import rank_vectors, targeted_report

from tests.evaluation.handmade import BASELINE, REFERENCES, STEERED, records  # noqa: F401


def test_targeted_report_by_answer_with_baseline():
    report = targeted_report(records(STEERED), "yes", "no", baseline=records(BASELINE))
    assert (report["source_kind"], report["n_source"]) == ("answer", 4)
    assert report["success"] == 0.75 and report["baseline_success"] == 0.0
    assert report["side_effects"] == {
        "color": {"n": 2, "accuracy": 1.0, "baseline_accuracy": 0.5, "accuracy_change": 0.5, "unchanged": 0.5},
        "shape": {"n": 2, "accuracy": 0.5, "baseline_accuracy": 1.0, "accuracy_change": -0.5, "unchanged": 0.5},
    }
    assert report["side_effects_overall"] == {"n": 4, "accuracy": 0.75, "baseline_accuracy": 0.75, "accuracy_change": 0.0, "unchanged": 0.5}


def test_targeted_report_by_answer_type_without_baseline():
    report = targeted_report(records(STEERED), "yes/no", "no")
    assert (report["source_kind"], report["n_source"], report["success"]) == ("answer_type", 5, 0.8)
    assert report["baseline_success"] is None
    assert report["side_effects"]["shape"] == {"n": 2, "accuracy": 0.5, "baseline_accuracy": None, "accuracy_change": None, "unchanged": None}


def test_targeted_report_errors():
    with pytest.raises(XlvlmError, match="no question has answer type or reference answer 'purple'"):
        targeted_report(records(STEERED), "purple", "no")
    partial = {k: v for k, v in BASELINE.items() if k != "c2"}
    with pytest.raises(XlvlmError, match="baseline: no prediction for id 'c2'"):
        targeted_report(records(STEERED), "yes", "no", baseline=records(partial))


def test_rank_vectors_scores_consistent_moves_first():
    base = [{"id": str(i), "prediction": "yes"} for i in range(4)]
    candidates = {
        "scatter": [{"id": "0", "prediction": "no"}, {"id": "1", "prediction": "red"}, {"id": "2", "prediction": "blue"}, {"id": "3", "prediction": "yes"}],
        "flip": [{"id": str(i), "prediction": p} for i, p in enumerate(["no", "No.", "no", "yes"])],
        "nothing": base,
    }
    ranked = rank_vectors(candidates, base)
    assert [(r["name"], r["score"], r["target"]) for r in ranked] == [("flip", 0.75, "no"), ("scatter", 0.25, "blue"), ("nothing", 0.0, None)]
    assert ranked[1]["share_changed"] == 0.75 and ranked[1]["consistency"] == pytest.approx(1 / 3) and ranked[1]["n_changed"] == 3
    fixed = rank_vectors(candidates, base, target="red", top_k=1)
    assert [(r["name"], r["target"], r["score"]) for r in fixed] == [("scatter", "red", 0.25)]
    with pytest.raises(XlvlmError, match="candidate 'x': id '9' not in the baseline"):
        rank_vectors({"x": [{"id": 9, "prediction": "no"}]}, base)
