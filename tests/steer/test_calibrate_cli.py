"""`xlvlm steer calibrate`, `steer learn --calibrate` and `steer apply` at the calibrated alpha, on
the tiny LLaVA: every row of the calibration equals a separate `steer apply` run scored alone."""

import json

import torch

from xlvlm.cli import main
from xlvlm.evaluation import read_predictions
from xlvlm.steer import LearnedSteering, SteeringVector
from xlvlm.steer.run import AnswerShift


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_calibrate_then_apply_at_the_stamped_alpha(tiny_dir, vlm_of, samples, tmp_path, capsys):
    model = str(tiny_dir("llava"))
    vlm = vlm_of("llava")
    direction = torch.randn(vlm.hidden_size, generator=torch.Generator().manual_seed(3))
    SteeringVector({"1": direction}, {"method": "mean-diff"}).save(tmp_path / "v.safetensors")
    rows = [dict(s, answer="yes", answer_type="yes/no") for s in samples]
    validation = _jsonl(tmp_path / "val.jsonl", rows)
    control = _jsonl(tmp_path / "control.jsonl", [dict(s, answer_type="other") for s in samples[:4]])
    # the target answer: what the steered model says to the first sample at alpha 8
    with SteeringVector.load(tmp_path / "v.safetensors").apply(vlm, alpha=8):
        target = vlm.generate(rows[:1], max_new_tokens=2)[0]
    common = ["--model", model, "--data", validation, "--max-new-tokens", "2", "--batch-size", "3", "--quiet"]
    assert main(["steer", "calibrate", *common, "--vector", str(tmp_path / "v.safetensors"), "--alphas", "2,8",
                 "--objective", "answer-shift", "--source-answer", "yes", "--target-answer", target,
                 "--control", control, "--max-side-effect", "100", "--out", str(tmp_path / "cal")]) == 0
    result = json.loads((tmp_path / "cal" / "result.json").read_text())
    assert result["stage"] == "calibration" and {"calibration.png", "calibrated.safetensors"} <= set(result["outputs"])
    for row in result["rows"]:  # each row equals its own steer apply run, scored alone
        out = tmp_path / f"apply-{row['alpha']:g}.jsonl"
        assert main(["steer", "apply", *common, "--vector", str(tmp_path / "v.safetensors"),
                     "--alpha", str(row["alpha"]), "--out", str(out)]) == 0
        baseline = read_predictions(tmp_path / "apply-0.jsonl")
        assert AnswerShift("yes", target)(read_predictions(out), baseline)["success"] == row["score"]
    chosen = result["chosen"]["alpha"]
    best = max(r["score"] for r in result["rows"])
    assert best > 0 and chosen == min((r["alpha"] for r in result["rows"] if r["score"] == best), key=abs)
    capsys.readouterr()
    calibrated = str(tmp_path / "cal" / "calibrated.safetensors")
    assert main(["steer", "apply", *common, "--vector", calibrated, "--out", str(tmp_path / "stamped.jsonl")]) == 0
    assert f"alpha {chosen:g}: calibrated on" in capsys.readouterr().out
    assert read_predictions(tmp_path / "stamped.jsonl") == read_predictions(tmp_path / f"apply-{chosen:g}.jsonl")


def test_learn_calibrate_stores_the_alpha_in_the_file(tiny_dir, samples, tmp_path, capsys):
    model = str(tiny_dir("llava"))
    plain = [dict(s, answer="yes", answer_type="yes/no") for s in samples]
    framed = [dict(s, prompt=s["prompt"] + " answer no") for s in plain]
    for name, rows in (("context", plain), ("source", plain), ("target", framed)):
        assert main(["extract", "--model", model, "--data", _jsonl(tmp_path / f"{name}.jsonl", rows),
                     "--layers", "1,2", "--select", "last-prompt", "--out", str(tmp_path / name), "--quiet"]) == 0
    learn = ["steer", "learn", "--context", str(tmp_path / "context"), "--layer", "2", "--hidden", "4", "--epochs",
             "3", "--source", str(tmp_path / "source"), "--target", str(tmp_path / "target"), "--quiet"]
    assert main([*learn, "--calibrate", str(tmp_path / "context.jsonl"), "--out", str(tmp_path / "l2s")]) == 2
    assert "give --model" in capsys.readouterr().err
    assert main([*learn, "--calibrate", str(tmp_path / "context.jsonl"), "--model", model, "--alphas", "1,2",
                 "--objective", "answer-shift", "--max-new-tokens", "2", "--out", str(tmp_path / "l2s")]) == 0
    stamp = LearnedSteering.load(tmp_path / "l2s").metadata["calibration"]
    assert stamp["alpha"] in (0.0, 1.0, 2.0) and stamp["objective"] == "answer-shift"
    assert stamp["on"]["data"].endswith("context.jsonl")
    result = json.loads((tmp_path / "l2s" / "result.json").read_text())
    assert result["calibration"] == stamp and "calibration.png" in result["outputs"]


def test_normalized_calibration_keeps_its_scale_for_apply(tiny_dir, vlm_of, samples, tmp_path, capsys):
    from xlvlm.steer.scale import Normalized, typical_state_norm

    model = str(tiny_dir("llava"))
    vlm = vlm_of("llava")
    direction = torch.randn(vlm.hidden_size, generator=torch.Generator().manual_seed(4)) * 50
    SteeringVector({"1": direction}, {"method": "mean-diff"}).save(tmp_path / "v.safetensors")
    data = _jsonl(tmp_path / "val.jsonl", [dict(s, answer="yes", answer_type="yes/no") for s in samples])
    common = ["--model", model, "--data", data, "--max-new-tokens", "2", "--batch-size", "3", "--quiet"]
    assert main(["steer", "calibrate", *common, "--vector", str(tmp_path / "v.safetensors"), "--alphas", "0.5,1",
                 "--objective", "answer-shift", "--target-answer", "x", "--normalize", "--out", str(tmp_path / "cal")]) == 0
    stamp = SteeringVector.load(tmp_path / "cal" / "calibrated.safetensors").metadata["calibration"]
    assert stamp["scale"]["1"] == typical_state_norm(vlm, [dict(s, answer="yes", answer_type="yes/no") for s in samples],
                                                     [1], batch_size=3)["1"]
    assert main(["steer", "apply", *common, "--vector", str(tmp_path / "cal" / "calibrated.safetensors"),
                 "--alpha", "1", "--out", str(tmp_path / "out.jsonl")]) == 0
    assert "normalized: alpha in units of the typical state norm" in capsys.readouterr().out
    with Normalized(SteeringVector({"1": direction}), stamp["scale"]).apply(vlm, alpha=1):
        expected = vlm.generate(samples, max_new_tokens=2)
    assert [r["prediction"] for r in read_predictions(tmp_path / "out.jsonl")] == expected
