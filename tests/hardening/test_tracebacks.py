"""Inputs that used to end in a traceback: binary word/id files, mathtext in labels."""

import json

import pytest
import torch

import xlvlm

BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\xfa"


def _stores(tmp_path, samples, hidden):
    rows = [dict(samples[i % len(samples)], id=f"q{i}") for i in range(8)]
    g = torch.Generator().manual_seed(0)
    xlvlm.FeatureStore.from_tensors({"1": torch.rand(8, hidden, generator=g)}, rows, path=tmp_path / "a")
    xlvlm.FeatureStore.from_tensors({"1": torch.rand(8, hidden, generator=g) + 1}, rows, path=tmp_path / "b")


@pytest.mark.parametrize("option", ["--ids", "--word-class"])
def test_binary_selection_files_are_one_line(cli, samples, tmp_path, option):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(s) + "\n" for s in samples[:3]))
    binary = tmp_path / "words.bin"
    binary.write_bytes(BINARY)
    code, _, err = cli(["extract", "--model", "unused", "--data", data, "--out", tmp_path / "s", option, binary])
    assert code == 2 and "words.bin" in err and "UTF-8" in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("command", ["concepts", "shift"])
def test_binary_words_file_is_one_line(cli, samples, tmp_path, command):
    _stores(tmp_path, samples, 6)
    binary = tmp_path / "words.bin"
    binary.write_bytes(BINARY)
    if command == "concepts":
        argv = ["concepts", "--features", tmp_path / "a", "--layer", "1", "--method", "kmeans", "--n-concepts", "2",
                "--words", binary, "--out", tmp_path / "c", "--quiet"]
    else:
        argv = ["shift", "--original", tmp_path / "a", "--finetuned", tmp_path / "b", "--layer", "1", "--method",
                "kmeans", "--n-concepts", "2", "--words", binary, "--out", tmp_path / "c"]
    code, _, err = cli(argv)
    assert code == 2 and "words.bin" in err and "UTF-8" in err and len(err.splitlines()) == 1, err


def test_sweep_with_mathtext_in_the_answers_finishes_and_keeps_everything(cli, tiny_dir, samples, tmp_path):
    hidden = xlvlm.load_vlm(tiny_dir("llava")).hidden_size
    _stores(tmp_path, samples, hidden)
    data = tmp_path / "d.jsonl"
    answers = [r"$\foo$", r"$\foo$", "$x^{", "red"]
    data.write_text("".join(json.dumps(dict(s, answer=a)) + "\n" for s, a in zip(samples, answers)))
    out = tmp_path / "sweep"
    code, stdout, err = cli(["steer", "sweep", "--model", tiny_dir("llava"), "--source", tmp_path / "a",
                             "--target", tmp_path / "b", "--data", data, "--layers", "1", "--alphas", "1",
                             "--source-answer", r"$\foo$", "--target-answer", "red", "--max-new-tokens", "2",
                             "--quiet", "--out", out])
    assert code == 0, err
    assert json.loads((out / "result.json").read_text())["source"] == r"$\foo$"
    assert (out / "sweep.png").stat().st_size > 0 and (out / "command.txt").is_file()


def test_concept_grid_draws_words_that_look_like_mathtext(tmp_path, samples):
    from xlvlm.figures import bar_chart, concept_grid

    words = [r"$\frac{", "$5", "cost$", r"\$"]
    concept_grid([[{"label": r"$\alpha", "words": words, "images": [samples[0]["image"]]}]], tmp_path / "g.png",
                 titles=[r"$\undefined$"])
    bar_chart({r"$\bad$": [1.0]}, tmp_path / "b.png", labels=[r"$\nope$"], ylabel="$y", title=r"$\x$")
    assert (tmp_path / "g.png").stat().st_size > 0 and (tmp_path / "b.png").stat().st_size > 0
