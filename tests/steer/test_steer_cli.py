import json

from xlvlm.cli import main


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_steer_compute_apply_evaluate_sweep(tiny_dir, samples, tmp_path, capsys):
    model = str(tiny_dir("llava"))
    yes = [dict(s, answer="yes", answer_type="yes/no") for s in samples[:4]]
    no = [dict(s, id=s["id"] + "n", answer="no", answer_type="yes/no") for s in samples[4:]]
    colour = [dict(s, id=s["id"] + "c", answer="red", answer_type="color") for s in samples[:3]]
    for name, rows in (("yes", yes), ("no", no)):
        assert main(["extract", "--model", model, "--data", _jsonl(tmp_path / f"{name}.jsonl", rows), "--layers", "1,2",
                     "--out", str(tmp_path / name), "--quiet"]) == 0
    assert main(["steer", "compute", "--source", str(tmp_path / "yes"), "--target", str(tmp_path / "no"),
                 "--layer", "1", "--out", str(tmp_path / "v.safetensors")]) == 0
    evaluation = _jsonl(tmp_path / "eval.jsonl", yes + colour)
    common = ["--model", model, "--data", evaluation, "--max-new-tokens", "3", "--quiet"]
    assert main(["steer", "apply", *common, "--vector", str(tmp_path / "v.safetensors"), "--alpha", "0",
                 "--out", str(tmp_path / "base.jsonl")]) == 0
    assert main(["steer", "apply", *common, "--vector", str(tmp_path / "v.safetensors"), "--alpha", "8",
                 "--positions", "generated", "--out", str(tmp_path / "steered.jsonl")]) == 0
    preds = [json.loads(line) for line in (tmp_path / "steered.jsonl").read_text().splitlines()]
    assert len(preds) == 7 and {"id", "prediction", "answer_type"} <= set(preds[0])
    capsys.readouterr()
    assert main(["evaluate", "--predictions", str(tmp_path / "steered.jsonl"), "--baseline", str(tmp_path / "base.jsonl"),
                 "--source", "yes", "--target", "no", "--out", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["targeted"]["n_source"] == 4
    assert main(["steer", "condition", "--positive", str(tmp_path / "yes"), "--negative", str(tmp_path / "no"),
                 "--layer", "1", "--out", str(tmp_path / "c.safetensors")]) == 0
    assert main(["steer", "sweep", *common, "--source", str(tmp_path / "yes"), "--target", str(tmp_path / "no"),
                 "--layers", "1,2", "--alphas", "0,4", "--methods", "mean-diff", "--out", str(tmp_path / "sw")]) == 0
    sweep = json.loads((tmp_path / "sw" / "result.json").read_text())
    assert len(sweep["rows"]) == 4 and (tmp_path / "sw" / "sweep.png").stat().st_size > 1000
    zero = [r for r in sweep["rows"] if r["alpha"] == 0]
    assert all(r["side_unchanged"] == 1.0 for r in zero)  # alpha 0 changes nothing
    assert sweep["settings"]["condition"] is None and sweep["settings"]["positions"] == "all"
    assert "no condition" in (tmp_path / "sw" / "sweep.md").read_text()
    assert main(["steer", "sweep", *common, "--source", str(tmp_path / "yes"), "--target", str(tmp_path / "no"),
                 "--layers", "2", "--alphas", "4", "--condition", str(tmp_path / "c.safetensors"),
                 "--out", str(tmp_path / "gated")]) == 0
    gated = json.loads((tmp_path / "gated" / "result.json").read_text())
    assert gated["settings"]["condition"]["layer"] == "1"
    assert "condition at layer 1" in (tmp_path / "gated" / "sweep.md").read_text()


def test_vector_size_mismatch_is_one_line(tiny_dir, samples, tmp_path, capsys):
    import torch
    from xlvlm.steer import SteeringVector

    SteeringVector({"1": torch.ones(7)}).save(tmp_path / "v.safetensors")
    code = main(["steer", "apply", "--model", str(tiny_dir("llava")), "--data", _jsonl(tmp_path / "d.jsonl", samples[:1]),
                 "--vector", str(tmp_path / "v.safetensors"), "--out", str(tmp_path / "p.jsonl"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "hidden size" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "p.jsonl").exists()
