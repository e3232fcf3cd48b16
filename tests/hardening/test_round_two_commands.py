"""Commands that overwrote the wrong file, accepted what they ignored, clamped absurd counts or
refused only after the work (findings 7-11)."""

import json
import socket

import pytest
import torch

import xlvlm
from xlvlm.cli import main

from tests.hardening.test_round_two_steer import _jsonl, _one_line


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model (or the organism) fails the test: every check must come before it."""
    from xlvlm import organism
    from xlvlm.cli import options

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(options, "load_model", refuse)
    monkeypatch.setattr(organism, "load", refuse)


# ---- finding 7: evaluate ------------------------------------------------------------------------
PREDICTIONS = [{"id": "a", "prediction": "yes", "answer": "yes", "answer_type": "yes/no"},
               {"id": "b", "prediction": "no", "answer": "yes", "answer_type": "yes/no"}]


def test_finding_7_evaluate_out_does_not_overwrite_a_file(tmp_path, capsys):
    predictions = _jsonl(tmp_path / "p.jsonl", PREDICTIONS)
    picture = tmp_path / "figure.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\nmine")
    assert main(["evaluate", "--predictions", predictions, "--out", str(picture)]) == 2
    assert "not .json" in _one_line(capsys) and picture.read_bytes().endswith(b"mine")
    (tmp_path / "r.json").write_text("{}")
    assert main(["evaluate", "--predictions", predictions, "--out", str(tmp_path / "r.json")]) == 2
    assert "--overwrite" in _one_line(capsys) and (tmp_path / "r.json").read_text() == "{}"
    assert main(["evaluate", "--predictions", predictions, "--out", str(tmp_path / "r.json"), "--overwrite"]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["stage"] == "evaluate"


def test_finding_7_evaluate_out_dir_writes_dir_result_json(tmp_path, capsys):
    predictions = _jsonl(tmp_path / "p.jsonl", PREDICTIONS)
    (tmp_path / "existing").mkdir()
    for folder in (tmp_path / "existing", tmp_path / "new"):
        assert main(["evaluate", "--predictions", predictions, "--out", str(folder)]) == 0
        assert folder.is_dir() and json.loads((folder / "result.json").read_text())["stage"] == "evaluate"


def test_finding_7_a_baseline_is_never_ignored(tmp_path, capsys):
    predictions = _jsonl(tmp_path / "p.jsonl", PREDICTIONS)
    other = _jsonl(tmp_path / "other.jsonl", [dict(r, id=r["id"] + "x") for r in PREDICTIONS])
    assert main(["evaluate", "--predictions", predictions, "--baseline", str(tmp_path / "missing.jsonl")]) == 2
    assert "baseline" in _one_line(capsys)
    assert main(["evaluate", "--predictions", predictions, "--baseline", other]) == 2
    assert "baseline" in _one_line(capsys)
    assert main(["evaluate", "--predictions", predictions, "--baseline", other, "--source", "yes",
                 "--target", "no"]) == 2
    assert "no baseline prediction for id 'a'" in _one_line(capsys)


@pytest.mark.parametrize("splits", [(1, "1"), ({"a": 1}, "random"), ([1], None)])
def test_finding_7_pope_split_must_be_a_name(tmp_path, capsys, splits):
    rows = [{"id": str(i), "prediction": "yes", "label": "yes", "split": split} for i, split in enumerate(splits)]
    code = main(["evaluate", "--task", "pope", "--predictions", _jsonl(tmp_path / "p.jsonl", rows)])
    assert code == 2 and "'split'" in _one_line(capsys)


# ---- finding 8: concepts --words with no word the model knows ------------------------------------
def test_finding_8_words_the_model_does_not_know_are_refused_before_learning(tiny_dir, tmp_path, capsys):
    config = json.loads((tiny_dir("llava") / "config.json").read_text())
    hidden = config["text_config"]["hidden_size"]
    xlvlm.FeatureStore.from_tensors({"1": torch.randn(8, hidden)}, [{"id": str(i)} for i in range(8)], path=tmp_path / "s")
    (tmp_path / "words.txt").write_text("qqqzzzx\nxyzzyplughq\n")
    capsys.readouterr()  # not what building the tiny model printed
    code = main(["concepts", "--features", str(tmp_path / "s"), "--layer", "1", "--method", "kmeans",
                 "--n-concepts", "2", "--model", str(tiny_dir("llava")), "--words", str(tmp_path / "words.txt"),
                 "--out", str(tmp_path / "c"), "--quiet", "--no-text-similarity"])
    err = _one_line(capsys)
    assert code == 2 and "words.txt" in err and "vocabulary" in err and not (tmp_path / "c" / "result.json").exists()


def test_finding_8_summary_says_no_model_only_without_one():
    from xlvlm.concepts.readable import summary_lines

    assert "no model" in summary_lines([{"concept": 0, "words": []}])[0]
    assert "no model" not in summary_lines([{"concept": 0, "words": []}], grounded=True)[0]


# ---- findings 9 and 11: organism counts, layers and --out checked before any work ----------------
@pytest.mark.parametrize("argv, says", [
    (["--test-images", "999999"], "test images 999999"),
    (["--side-questions", "99999999"], "side questions"),
    (["--train-images", "99999999"], "train images"),
    (["--steer-layer", "99"], "steer layer 99"),
])
def test_finding_9_11_steer_hallucination_refuses_out_of_range_settings_at_once(tmp_path, capsys, no_model,
                                                                               argv, says):
    code = main(["organism", "steer-hallucination", *argv, "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 2 and says in _one_line(capsys)


def test_finding_11_steer_hallucination_refuses_a_file_or_a_full_folder_as_out(tmp_path, capsys, no_model):
    (tmp_path / "file").write_text("mine")
    assert main(["organism", "steer-hallucination", "--out", str(tmp_path / "file"), "--quiet"]) == 2
    assert "not a folder" in _one_line(capsys) and (tmp_path / "file").read_text() == "mine"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "result.json").write_text("{}")
    assert main(["organism", "steer-hallucination", "--out", str(tmp_path / "full"), "--quiet"]) == 2
    assert "--overwrite" in _one_line(capsys)


def test_finding_9_11_organism_pope_refuses_counts_and_out_at_once(tmp_path, capsys, no_model):
    (tmp_path / "dir").mkdir()
    assert main(["organism", "pope", "--out", str(tmp_path / "dir")]) == 2
    assert "a folder" in _one_line(capsys)
    assert main(["organism", "pope", "--images", "99999999", "--out", str(tmp_path / "p.jsonl")]) == 2
    assert "images 99999999" in _one_line(capsys) and not (tmp_path / "p.jsonl").exists()
    (tmp_path / "old.jsonl").write_text("{}\n")
    assert main(["organism", "pope", "--out", str(tmp_path / "old.jsonl")]) == 2
    assert "--overwrite" in _one_line(capsys) and (tmp_path / "old.jsonl").read_text() == "{}\n"


# ---- finding 10: serve on a port in use ----------------------------------------------------------
def test_finding_10_serve_on_a_port_in_use_says_so_before_loading_the_model(tmp_path, capsys, no_model):
    pytest.importorskip("fastapi")
    (tmp_path / "run").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code = main(["serve", str(tmp_path / "run"), "--model", "organism:original", "--port", str(port)])
    err = _one_line(capsys)
    assert code == 2 and f"--port {port}" in err and "in use" in err


# ---- found by the hostile suite ------------------------------------------------------------------
def test_a_deeply_nested_config_is_refused_unparsed(tmp_path, capsys):
    from xlvlm.cli.config import load_config
    from xlvlm.errors import XlvlmError

    (tmp_path / "c.yaml").write_text("{" * 5000)  # PyYAML needs tens of seconds to refuse this itself
    with pytest.raises(XlvlmError, match="nested more than"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "ok.yaml").write_text("layers: [1, 2]\nmethod: kmeans\n")
    assert load_config(tmp_path / "ok.yaml") == {"layers": [1, 2], "method": "kmeans"}
