"""One rule for every command's output: an existing --out is refused in one line before any work
starts, unless --overwrite (extract: unless it resumes the same command's store)."""

import json

import pytest

from xlvlm.cli import main

REFUSING = [
    ["concepts", "--features", "F", "--layer", "0"],
    ["shift", "--original", "F", "--finetuned", "F", "--layer", "0"],
    ["steer", "compute", "--source", "F", "--target", "F", "--layer", "0"],
    ["steer", "condition", "--positive", "F", "--negative", "F", "--layer", "0"],
    ["steer", "learn", "--context", "F", "--source", "F", "--target", "F", "--layer", "0"],
    ["steer", "sweep", "--model", "M", "--source", "F", "--target", "F", "--data", "D"],
    ["organism", "train", "--reduced"],
    ["organism", "finetune", "--original", "M", "--reduced"],
    ["organism", "hallucinate", "--original", "M", "--reduced"],
]


@pytest.mark.parametrize("argv", REFUSING, ids=[" ".join(a[:2]) for a in REFUSING])
def test_an_existing_out_is_refused_before_any_work(argv, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.json").write_text("{}")
    assert main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--out" in err and "--overwrite" in err and "already exists" in err, err
    assert (out / "result.json").read_text() == "{}"
    if argv[:2] == ["organism", "train"]:
        return  # it has no input to miss: with --overwrite it would train
    # with --overwrite the rule lets the command go on (to its next check: here the missing inputs)
    assert main(argv + ["--out", str(out), "--overwrite"]) == 2
    assert "already exists" not in capsys.readouterr().err


def _jsonl(path, samples):
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    return path


def test_extract_resumes_its_own_store_and_replaces_another_only_with_overwrite(tiny_dir, samples, tmp_path, capsys):
    data = _jsonl(tmp_path / "d.jsonl", samples[:2])
    base = ["extract", "--model", str(tiny_dir("llava")), "--data", str(data), "--out", str(tmp_path / "s"), "--quiet"]
    assert main(base + ["--layers", "1"]) == 0
    assert main(base + ["--layers", "1"]) == 0  # the same command: the finished store is reused
    capsys.readouterr()
    assert main(base + ["--layers", "final"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(base + ["--layers", "final", "--overwrite"]) == 0
    from xlvlm import FeatureStore
    assert FeatureStore(tmp_path / "s").layers == ["final"]


def test_extract_overwrite_never_deletes_what_is_not_a_store(tiny_dir, samples, tmp_path, capsys):
    data = _jsonl(tmp_path / "d.jsonl", samples[:1])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["extract", "--model", str(tiny_dir("llava")), "--data", str(data), "--out", str(mine),
                 "--overwrite", "--quiet"]) == 2
    assert "not a feature store" in capsys.readouterr().err and (mine / "notes.txt").read_text() == "keep"


def test_python_errors_name_python_arguments(tiny_dir, samples, tmp_path):
    import xlvlm
    from xlvlm.errors import XlvlmError

    vlm = xlvlm.load_vlm(tiny_dir("llava"))
    xlvlm.extract(vlm, samples[:1], layers=[1], out=tmp_path / "s", progress=False)
    with pytest.raises(XlvlmError) as err:
        xlvlm.extract(vlm, samples[:1], layers=["final"], out=tmp_path / "s", progress=False)
    assert "choose another out or pass overwrite=True" in str(err.value) and "--" not in str(err.value)
    with pytest.raises(XlvlmError, match=r"device='cuda' asked for.*use device='cpu'"):
        import torch
        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
        xlvlm.load_vlm(tiny_dir("llava"), device="cuda")


def test_report_rebuilds_its_own_page_and_refuses_another_file(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "stage").mkdir(parents=True)
    (run / "report.html").write_text("<p>my notes</p>")
    assert main(["report", str(run)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (run / "report.html").read_text() == "<p>my notes</p>"


def test_python_saves_refuse_an_existing_file_unless_overwrite(tmp_path):
    import torch

    from xlvlm.errors import XlvlmError
    from xlvlm.steer import SteeringVector

    vector = SteeringVector({"0": torch.ones(4)})
    path = vector.save(tmp_path / "v.safetensors")
    with pytest.raises(XlvlmError, match="choose another path or pass overwrite=True"):
        SteeringVector({"0": torch.zeros(4)}).save(path)
    assert SteeringVector.load(path).layer_activations["0"].sum() == 4
    SteeringVector({"0": torch.zeros(4)}).save(path, overwrite=True)
    assert SteeringVector.load(path).layer_activations["0"].sum() == 0


def test_a_python_sweep_refuses_an_existing_out_before_generating(tmp_path):
    import torch

    from xlvlm.errors import XlvlmError
    from xlvlm.steer import SteeringVector
    from xlvlm.steer.run import sweep

    out = tmp_path / "sweep"
    out.mkdir()
    (out / "result.json").write_text("{}")

    class NoModel:  # generating would fail loudly: the refusal must come first
        num_layers, hidden_size = 2, 4

    with pytest.raises(XlvlmError, match="out .*already exists.*overwrite=True"):
        sweep(NoModel(), {"v": SteeringVector({"0": torch.ones(4)})}, [], [1.0], out=out)


def test_the_per_sample_error_says_what_to_pass_in_the_callers_words():
    import torch

    from xlvlm.errors import XlvlmError, command_line_words
    from xlvlm.steer import PerSampleSteering

    p2s = PerSampleSteering({"2": torch.ones(2, 4)}, ["a", "b"])
    with pytest.raises(XlvlmError, match=r"'c' has no per-sample vector.*'a', 'b'.*steer only those samples"):
        p2s.rows(["c"], "2")
    with command_line_words(), pytest.raises(XlvlmError, match="give --data with only those samples"):
        p2s.rows(["c"], "2")


def test_demo_reuses_its_own_folder_and_refuses_anything_else(tmp_path):
    from xlvlm.apps.demo import DEMO_MARK, _claim_folder
    from xlvlm.errors import XlvlmError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep")
    for overwrite in (False, True):  # --overwrite never deletes a folder that is not a demo run's
        with pytest.raises(XlvlmError, match="not a demo run's folder"):
            _claim_folder(mine, overwrite=overwrite)
    assert (mine / "thesis.tex").read_text() == "keep"
    demo = tmp_path / "demo"
    _claim_folder(demo, overwrite=False)
    (demo / "concepts").mkdir()
    _claim_folder(demo, overwrite=False)  # a second run reuses its stages
    assert (demo / "concepts").is_dir()
    _claim_folder(demo, overwrite=True)  # --overwrite starts afresh
    assert not (demo / "concepts").exists() and (demo / DEMO_MARK).is_file()
