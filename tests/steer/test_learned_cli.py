"""`xlvlm steer compute --per-sample`, `steer learn`, `steer apply --learned/--per-sample`, and the
report of a learned-steering folder, on the tiny LLaVA."""

import json

import torch

from xlvlm.cli import main
from xlvlm.report import build_report
from xlvlm.steer import LearnedSteering, PerSampleSteering


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _one_line(capsys, code) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


def test_learn_apply_report_end_to_end(tiny_dir, vlm_of, samples, tmp_path, capsys):
    model = str(tiny_dir("llava"))
    plain = [dict(s, answer="yes", answer_type="yes/no") for s in samples]
    framed = [dict(s, prompt=s["prompt"] + " answer no") for s in plain]  # the same ids, another framing
    for name, rows in (("context", plain), ("source", plain), ("target", framed)):
        assert main(["extract", "--model", model, "--data", _jsonl(tmp_path / f"{name}.jsonl", rows),
                     "--layers", "1,2", "--select", "last-prompt", "--out", str(tmp_path / name), "--quiet"]) == 0
    stores = ["--source", str(tmp_path / "source"), "--target", str(tmp_path / "target")]
    assert main(["steer", "compute", "--per-sample", *stores, "--layer", "2", "--out", str(tmp_path / "p2s.safetensors")]) == 0
    p2s = PerSampleSteering.load(tmp_path / "p2s.safetensors")
    assert p2s.ids == [s["id"] for s in samples] and p2s.layers == ["2"]

    learn = ["steer", "learn", "--context", str(tmp_path / "context"), "--layer", "2", "--context-layer", "1",
             "--hidden", "4", "--epochs", "5", "--val-fraction", "0.25"]
    assert main([*learn, *stores, "--out", str(tmp_path / "l2s")]) == 0
    assert "held-out cosine" in capsys.readouterr().out
    result = json.loads((tmp_path / "l2s" / "result.json").read_text())
    assert result["stage"] == "learned-steering" and result["version"] == 1
    assert result["settings"]["context_layer"] == "1" and result["settings"]["steer_layer"] == "2"
    assert (result["training"]["n_train"], result["training"]["n_val"]) == (6, 2) and len(result["history"]) == 5
    assert set(result["outputs"]) == {"learned.safetensors", "learning_curve.png", "command.txt"}
    learned = LearnedSteering.load(tmp_path / "l2s")
    # the same vectors from a --per-sample file give the same model (deterministic, paired by id)
    assert main([*learn, "--per-sample", str(tmp_path / "p2s.safetensors"), "--out", str(tmp_path / "l2s-file")]) == 0
    again = LearnedSteering.load(tmp_path / "l2s-file" / "learned.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(learned.weights().values(), again.weights().values()))

    evaluation = _jsonl(tmp_path / "eval.jsonl", plain)
    common = ["steer", "apply", "--model", model, "--data", evaluation, "--max-new-tokens", "3", "--alpha", "4",
              "--batch-size", "3", "--quiet"]
    assert main([*common, "--learned", str(tmp_path / "l2s"), "--out", str(tmp_path / "l2s.jsonl")]) == 0
    assert main([*common, "--per-sample", str(tmp_path / "p2s.safetensors"), "--out", str(tmp_path / "p2s.jsonl")]) == 0
    vlm = vlm_of("llava")
    for name, steering in (("l2s", learned), ("p2s", p2s)):
        written = [json.loads(line)["prediction"] for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        with steering.apply(vlm, alpha=4):
            assert written == vlm.generate(plain, max_new_tokens=3, batch_size=8)

    page = build_report(tmp_path / "l2s").read_text()
    assert "Learned steering (L2S)" in page and "held out" in page and "data:image/png;base64" in page


def test_learn_and_apply_refuse_bad_input_in_one_line(tiny_dir, samples, tmp_path, capsys):
    model = str(tiny_dir("llava"))
    rows = [dict(s) for s in samples[:4]]
    assert main(["extract", "--model", model, "--data", _jsonl(tmp_path / "d.jsonl", rows), "--layers", "1,2",
                 "--out", str(tmp_path / "store"), "--quiet"]) == 0
    store = str(tmp_path / "store")
    out = tmp_path / "l2s"
    learn = ["steer", "learn", "--context", store, "--source", store, "--target", store, "--out", str(out)]
    err = _one_line(capsys, main([*learn, "--layer", "1", "--context-layer", "2"]))
    assert "context layer 2 comes after the steering layer 1" in err and not out.exists()
    err = _one_line(capsys, main([*learn, "--layer", "1", "--per-sample", str(tmp_path / "p.safetensors")]))
    assert "--source STORE --target STORE, or as --per-sample FILE" in err
    err = _one_line(capsys, main(["steer", "learn", "--context", store, "--source", store, "--layer", "1",
                                  "--out", str(out)]))
    assert "--source and --target go together" in err
    err = _one_line(capsys, main([*learn, "--layer", "1", "--val-fraction", "0.9"]))
    assert "val_fraction must be" in err and not out.exists()
    err = _one_line(capsys, main(["steer", "compute", "--per-sample", "--source", store, "--target", store,
                                  "--layer", "1", "--method", "pca", "--out", str(tmp_path / "p.safetensors")]))
    assert "--per-sample takes --source, --target, --layer and --out only" in err
    data = _jsonl(tmp_path / "e.jsonl", rows)
    apply = ["steer", "apply", "--model", model, "--data", data, "--out", str(tmp_path / "p.jsonl"), "--quiet"]
    err = _one_line(capsys, main(apply))
    assert "give one of --vector FILE, --learned DIR and --per-sample FILE" in err
    (tmp_path / "v.safetensors").write_bytes(b"not a file")
    err = _one_line(capsys, main([*apply, "--learned", str(tmp_path / "v.safetensors"), "--vector",
                                  str(tmp_path / "v.safetensors")]))
    assert "(got --vector, --learned)" in err
    err = _one_line(capsys, main([*apply, "--learned", str(tmp_path / "v.safetensors")]))
    assert "not a readable learned steering file" in err and not (tmp_path / "p.jsonl").exists()
