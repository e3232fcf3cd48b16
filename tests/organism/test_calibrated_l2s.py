"""`xlvlm organism calibrate-l2s` on a small slice: vectors of each contrast, calibration on other
training images, the chosen alpha scored on test images, written as one unit."""

import json

from xlvlm.cli import main


def test_calibrate_l2s_small_slice(tmp_path, capsys):
    out = tmp_path / "cal"
    assert main(["organism", "calibrate-l2s", "--train-images", "8", "--calibration-images", "4", "--test-images", "4",
                 "--side-questions", "8", "--epochs", "5", "--quiet", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["stage"] == "calibrated-l2s" and "calibrated_l2s.png" in result["outputs"]
    assert [r["contrast"] for r in result["rows"]] == ["framing", "answers", "answers."]
    assert (result["n_train"], result["n_calibration"], result["n_test"]) == (8 * 12, 4 * 12, 4 * 12)
    for row in result["rows"]:
        tried = {r["alpha"] for r in row["calibration"]["rows"]}
        assert row["alpha"] in tried and 0.0 in tried
        chosen = next(r for r in row["calibration"]["rows"] if r["alpha"] == row["alpha"])
        assert chosen["allowed"] and chosen["score"] == max(r["score"] for r in row["calibration"]["rows"] if r["allowed"])
    # the forced answers' full stop falls outside before-at:., so both writings give the same vectors
    answers, answers_dot = result["rows"][1], result["rows"][2]
    assert answers["vector_norm_mean"] == answers_dot["vector_norm_mean"]
    from xlvlm.report import build_report

    html = build_report(out).read_text()
    assert "Calibrated learned steering" in html and "answers." in html
    printed = capsys.readouterr().out
    assert "contrast" in printed and "answers." in printed
