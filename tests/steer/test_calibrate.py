"""Calibration chooses the strength (and the candidate) of highest score under the side-effect
limit, on the samples given, and records what it ran on."""

import json

import pytest
import torch

import xlvlm.steer.run as run
from xlvlm.errors import XlvlmError
from xlvlm.steer import SteeringVector
from xlvlm.steer.calibrate import CalibrationSettings, calibrate
from xlvlm.steer.calibrate_outputs import CALIBRATED_FILE, PLOT_FILE, write_calibration

# POPE questions: half are about absent objects (label no). The planted "model" says yes to all
# of them unsteered; steering with strength alpha turns the first round(alpha * 2) absent-object
# answers to "no", and from alpha > 3 on also breaks a control question per unit of alpha.
VALIDATION = [{"id": f"v{i}", "prompt": "is there a red circle?", "label": "yes" if i < 4 else "no"} for i in range(8)]
CONTROL = [{"id": f"c{i}", "prompt": "what shape?", "answer": "circle"} for i in range(10)]


def _planted_predict(vlm, samples, steering=None, alpha=1.0, **_):
    if steering is None:
        alpha = 0.0
    scale = alpha * steering.metadata.get("strength", 1.0) if steering is not None else 0.0
    records = []
    for i, s in enumerate(samples):
        if "label" in s:
            absent = i - 4
            answer = "no" if s["label"] == "no" and absent < round(scale * 2) else "yes"
        else:
            answer = "square" if i < int(max(0.0, scale - 3)) else "circle"
        records.append({**s, "prediction": answer})
    return records


@pytest.fixture
def planted(monkeypatch):
    monkeypatch.setattr(run, "predict", _planted_predict)


def _vector(strength=1.0):
    return SteeringVector({"0": torch.ones(4)}, {"method": "mean-diff", "strength": strength})


def test_the_best_allowed_alpha_is_chosen(planted):
    # F1 rises with alpha until every absent-object answer is "no" (alpha >= 2); alpha 4 changes
    # 1 of 10 control answers (10 points), over the 2-point limit.
    result = calibrate(None, _vector(), VALIDATION, CONTROL,
                       CalibrationSettings(alphas=[0.5, 1, 2, 4], max_side_effect=0.02), progress=False)
    assert (result.candidate, result.alpha, result.score) == ("mean-diff", 2.0, 1.0)
    by_alpha = {r["alpha"]: r for r in result.rows}
    assert by_alpha[0.0]["candidate"] == "none" and by_alpha[0.0]["score"] == pytest.approx(2 * 4 / (2 * 4 + 4))
    assert by_alpha[4.0]["side_effect"] == pytest.approx(0.1) and not by_alpha[4.0]["allowed"]
    assert result.on == {"n_samples": 8, "n_control": 10}
    # without a limit that holds, the strongest useful alpha is still 2 (ties go to the smaller |alpha|)
    loose = calibrate(None, _vector(), VALIDATION, CONTROL, CalibrationSettings(alphas=[2, 4], max_side_effect=1.0),
                      progress=False)
    assert loose.alpha == 2.0


def test_a_steering_that_only_breaks_things_is_calibrated_to_zero(planted):
    # strength 10: alpha 0.5 is already past the control limit
    result = calibrate(None, _vector(10.0), VALIDATION, CONTROL, CalibrationSettings(alphas=[0.5, 1]), progress=False)
    assert result.alpha == 0.0 and result.candidate == "none"


def test_candidates_pick_the_steering_too(planted):
    result = calibrate(None, {"weak": _vector(0.25), "strong": _vector(1.0)}, VALIDATION, CONTROL,
                       CalibrationSettings(alphas=[1, 2]), progress=False)
    assert (result.candidate, result.alpha) == ("strong", 2.0)
    assert {r["candidate"] for r in result.rows} == {"none", "weak", "strong"}


def test_settings_are_checked():
    with pytest.raises(XlvlmError, match="objective"):
        CalibrationSettings(objective="f1")
    with pytest.raises(XlvlmError, match="finite"):
        CalibrationSettings(alphas=[float("nan")])
    with pytest.raises(XlvlmError, match="fraction"):
        CalibrationSettings(max_side_effect=2)
    assert CalibrationSettings(alphas=[2, -1, 2]).alphas == (0.0, -1.0, 2.0)


def test_the_folder_holds_the_stamped_steering_curve_and_result(planted, tmp_path):
    vector = _vector()
    result = calibrate(None, vector, VALIDATION, CONTROL, CalibrationSettings(alphas=[1, 2, 4]), progress=False,
                       on={"data": "val.jsonl"})
    path = write_calibration(result, vector, tmp_path / "cal", command="xlvlm steer calibrate ...")
    assert path.name == CALIBRATED_FILE and (tmp_path / "cal" / PLOT_FILE).stat().st_size > 0
    loaded = SteeringVector.load(path)
    stamp = loaded.metadata["calibration"]
    assert stamp["alpha"] == 2.0 and stamp["objective"] == "pope-f1" and stamp["on"]["data"] == "val.jsonl"
    saved = json.loads((tmp_path / "cal" / "result.json").read_text())
    assert saved["stage"] == "calibration" and saved["chosen"]["alpha"] == 2.0 and len(saved["rows"]) == 4
    from xlvlm.report import build_report

    html = build_report(tmp_path).read_text()
    assert "<h2>Calibration" in html and "Chosen: mean-diff at alpha 2.0" in html and "data:image/png" in html
