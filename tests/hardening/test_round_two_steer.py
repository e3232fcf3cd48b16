"""Steering with values that are valid numbers but absurd, positions that never occur, and an
--out that cannot be written (findings 4, 5, 6, 11 for `steer`)."""

import json

import pytest
import torch

import xlvlm
from xlvlm.cli import main
from xlvlm.errors import XlvlmError


def _store(path, features, ids=None):
    ids = ids or [f"s{i}" for i in range(features.shape[0])]
    return xlvlm.FeatureStore.from_tensors({"1": features}, [{"id": i} for i in ids], path=path)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _one_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err[:800]
    return err


# ---- finding 4: finite but huge values ---------------------------------------------------------
def test_finding_4_compute_refuses_states_whose_vector_norm_overflows(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    _store(tmp_path / "a", 1e36 * torch.rand(4, 16, generator=g))
    _store(tmp_path / "b", -1e36 * torch.rand(4, 16, generator=g))
    code = main(["steer", "compute", "--source", str(tmp_path / "a"), "--target", str(tmp_path / "b"),
                 "--layer", "1", "--out", str(tmp_path / "v.safetensors")])
    err = _one_line(capsys)
    assert code == 2 and "float32" in err and not (tmp_path / "v.safetensors").exists()


def test_finding_4_a_vector_file_of_huge_values_is_refused_on_load(tmp_path):
    from safetensors.torch import save_file

    from xlvlm.steer import PerSampleSteering, SteeringVector

    save_file({"layer/1": torch.full((16,), 1e36)}, str(tmp_path / "v.safetensors"), metadata={"xlvlm": "{}"})
    with pytest.raises(XlvlmError, match="norm of .*float32"):
        SteeringVector.load(tmp_path / "v.safetensors")
    with pytest.raises(XlvlmError, match="float32"):
        PerSampleSteering({"1": torch.full((2, 16), 1e36)}, ["a", "b"], {}).save(tmp_path / "p.safetensors")


def test_finding_4_apply_refuses_steering_that_overflows_the_model_dtype(vlm_of):
    from xlvlm.steer.apply import check_steering_range

    vlm = vlm_of("llava")
    big = {"1": torch.full((vlm.hidden_size,), 1e19)}  # a norm past 1.8e19
    with pytest.raises(XlvlmError, match="lower --alpha"):
        xlvlm.steer.SteeringVector(big).apply(vlm)
    check_steering_range({"1": torch.ones(4)}, 1e6, torch.float32, "fine")
    with pytest.raises(XlvlmError, match="float16"):
        check_steering_range({"1": torch.ones(4)}, 1e5, torch.float16, "per-sample steering")


def test_finding_4_per_sample_rows_that_overflow_are_refused_at_generation(vlm_of, samples):
    from xlvlm.steer import PerSampleSteering

    vlm = vlm_of("llava")
    chosen = samples[:2]
    large = PerSampleSteering({"1": torch.full((2, vlm.hidden_size), 1e14)}, [s["id"] for s in chosen], {})
    with pytest.raises(XlvlmError, match="per-sample steering .*lower --alpha"):
        with large.apply(vlm, alpha=1e6):
            vlm.predict(chosen, max_new_tokens=1, progress=False)


def test_finding_4_shift_refuses_huge_states_in_one_line(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    _store(tmp_path / "o", 1e36 * torch.rand(12, 8, generator=g))
    _store(tmp_path / "f", 1e36 * torch.rand(12, 8, generator=g))
    code = main(["shift", "--original", str(tmp_path / "o"), "--finetuned", str(tmp_path / "f"), "--layer", "1",
                 "--n-concepts", "2", "--method", "kmeans", "--out", str(tmp_path / "out")])
    err = _one_line(capsys)
    assert code == 2 and "float32" in err


# ---- finding 5: pca from one sample ------------------------------------------------------------
def test_finding_5_pca_from_one_sample_is_refused(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    _store(tmp_path / "a", torch.randn(1, 8, generator=g), ["x"])
    _store(tmp_path / "b", torch.randn(1, 8, generator=g), ["x"])
    code = main(["steer", "compute", "--method", "pca", "--source", str(tmp_path / "a"), "--target",
                 str(tmp_path / "b"), "--layer", "1", "--out", str(tmp_path / "v.safetensors")])
    err = _one_line(capsys)
    assert code == 2 and "at least 2" in err and not (tmp_path / "v.safetensors").exists()


def test_finding_5_a_zero_vector_is_never_written(tmp_path, capsys):
    rows = torch.randn(3, 8)
    _store(tmp_path / "a", rows)
    for method in ("mean-diff", "pca", "mean-of-shifts"):
        code = main(["steer", "compute", "--method", method, "--source", str(tmp_path / "a"), "--target",
                     str(tmp_path / "a"), "--layer", "1", "--out", str(tmp_path / "v.safetensors")])
        assert code == 2 and "is zero" in _one_line(capsys) and not (tmp_path / "v.safetensors").exists()


# ---- finding 6 and 11: positions that never occur, --out that cannot be written ------------------
@pytest.fixture
def apply_setup(tiny_dir, samples, tmp_path):
    from xlvlm.steer import SteeringVector

    vlm_dir = str(tiny_dir("llava"))
    import json as _json
    hidden = _json.loads((tiny_dir("llava") / "config.json").read_text())["text_config"]["hidden_size"]
    SteeringVector({"1": torch.ones(hidden)}).save(tmp_path / "v.safetensors")
    data = _jsonl(tmp_path / "d.jsonl", samples[:2])
    return ["steer", "apply", "--model", vlm_dir, "--data", data, "--vector", str(tmp_path / "v.safetensors"),
            "--max-new-tokens", "2", "--quiet"]


def test_finding_6_a_position_past_every_sequence_is_an_error(apply_setup, tmp_path, capsys):
    code = main([*apply_setup, "--positions", "99999", "--out", str(tmp_path / "p.jsonl")])
    err = _one_line(capsys)
    assert code == 2 and "nothing was steered" in err and not (tmp_path / "p.jsonl").exists()
    assert "p.jsonl.partial" in err  # what was generated is kept, under a name that does not look complete
    assert main([*apply_setup, "--positions", "0", "--out", str(tmp_path / "q.jsonl")]) == 0


def test_finding_11_steer_apply_refuses_an_existing_out_before_the_model_loads(apply_setup, tmp_path, capsys,
                                                                               monkeypatch):
    from xlvlm.cli import options

    def no_model(args):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(options, "load_model", no_model)
    folder = tmp_path / "existing"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    code = main([*apply_setup, "--out", str(folder)])
    assert code == 2 and "a folder" in _one_line(capsys) and (folder / "keep.txt").read_text() == "mine"
    (tmp_path / "old.jsonl").write_text("{}\n")
    code = main([*apply_setup, "--out", str(tmp_path / "old.jsonl")])
    assert code == 2 and "--overwrite" in _one_line(capsys)
    code = main([*apply_setup, "--positions", "nowhere", "--out", str(tmp_path / "new.jsonl")])
    assert code == 2 and "positions" in _one_line(capsys)
