"""Numeric and list options: refused when read, with one line naming the option (exit status 2)."""

import json

import pytest
import torch

import xlvlm


@pytest.mark.parametrize("argv, option", [
    (["steer", "apply", "--alpha", "nan"], "--alpha"),
    (["steer", "apply", "--alpha", "inf"], "--alpha"),
    (["steer", "apply", "--alpha", "-1e40"], "--alpha"),
    (["shift", "--alpha", "nan"], "--alpha"),
    (["steer", "sweep", "--alphas", "1,nan"], "--alphas"),
    (["steer", "sweep", "--alphas", "a,b"], "--alphas"),
    (["steer", "sweep", "--alphas", ","], "--alphas"),
    (["steer", "sweep", "--methods", ""], "--methods"),
    (["steer", "sweep", "--layers", " , "], "--layers"),
    (["extract", "--layers", ","], "--layers"),
    (["steer", "apply", "--batch-size", "-2"], "--batch-size"),
    (["extract", "--batch-size", "0"], "--batch-size"),
    (["steer", "apply", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["extract", "--shard-samples", "0"], "--shard-samples"),
    (["extract", "--limit", "0"], "--limit"),
    (["extract", "--seed", str(2**80)], "--seed"),
    (["concepts", "--seed", "-1"], "--seed"),
    (["concepts", "--n-concepts", "0"], "--n-concepts"),
    (["concepts", "--top-words", "-3"], "--top-words"),
    (["steer", "compute", "--from", "-1"], "--from"),
    (["steer", "condition", "--shrinkage", "2"], "--shrinkage"),
    (["organism", "train", "--minutes", "-1"], "--minutes"),
    (["organism", "finetune", "--minutes", "nan"], "--minutes"),
    (["extract", "--device", "tpu9"], "--device"),
    (["extract", "--out", ""], "--out"),
])
def test_bad_number_or_list_is_one_line_naming_the_option(cli, argv, option):
    code, _, err = cli(argv)
    assert code == 2 and len(err.splitlines()) == 1 and f"argument {option}" in err, err
    assert "Traceback" not in err


def test_alpha_at_the_bound_is_accepted_past_it_refused(cli, tmp_path):
    from xlvlm.cli.validate import MAX_ALPHA, alpha

    assert alpha(str(MAX_ALPHA)) == MAX_ALPHA and alpha("-2.5") == -2.5
    code, _, err = cli(["steer", "apply", "--alpha", str(2 * MAX_ALPHA)])
    assert code == 2 and "at most" in err


def test_empty_id_in_jsonl_is_refused(cli, samples, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(samples[0]) + "\n" + json.dumps(dict(samples[1], id="")) + "\n")
    code, _, err = cli(["extract", "--model", "unused", "--data", data, "--out", tmp_path / "s"])
    assert code == 2 and "d.jsonl:2" in err and "'id'" in err and len(err.splitlines()) == 1


def test_shard_samples_rounded_to_whole_batches_says_so(cli, tiny_dir, samples, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(s) + "\n" for s in samples[:4]))
    code, _, err = cli(["extract", "--model", tiny_dir("llava"), "--data", data, "--out", tmp_path / "s",
                        "--batch-size", "4", "--shard-samples", "3", "--quiet"])
    assert code == 0
    assert "--shard-samples 3 becomes 4" in err
    shards = xlvlm.FeatureStore(tmp_path / "s").manifest.shards
    assert [shard.n_samples for shard in shards] == [4]  # what the warning said


def test_steer_compute_n_concepts_zero_never_reaches_kmeans(cli, tmp_path, samples):
    rows = [dict(samples[i], id=f"q{i}") for i in range(4)]
    xlvlm.FeatureStore.from_tensors({"1": torch.rand(4, 3)}, rows, path=tmp_path / "a")
    code, _, err = cli(["steer", "compute", "--source", tmp_path / "a", "--target", tmp_path / "a", "--layer", "1",
                        "--method", "concept", "--n-concepts", "0", "--out", tmp_path / "v.safetensors"])
    assert code == 2 and "--n-concepts" in err


def test_library_refuses_empty_sweeps_and_bad_predict_settings(samples):
    from xlvlm.errors import XlvlmError
    from xlvlm.steer.run import predict, sweep_stores

    with pytest.raises(XlvlmError, match="no alphas"):
        sweep_stores(None, None, None, samples, layers=["1"], alphas=[])
    with pytest.raises(XlvlmError, match="no layers"):
        sweep_stores(None, None, None, samples, layers=[], alphas=[1])
    with pytest.raises(XlvlmError, match="finite"):
        sweep_stores(None, None, None, samples, layers=["1"], alphas=[float("nan")])
    with pytest.raises(XlvlmError, match="at least 1"):
        predict(None, samples, batch_size=-2)
    with pytest.raises(XlvlmError, match="finite"):
        predict(None, samples, alpha=float("inf"))


def test_main_returns_2_for_a_bad_option_like_for_any_bad_input(capsys):
    from xlvlm.cli import main

    assert main(["steer", "apply", "--alpha", "nan"]) == 2
    assert capsys.readouterr().err.startswith("xlvlm: error: argument --alpha")
