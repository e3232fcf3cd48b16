"""``xlvlm patch`` on the organism: one unit of outputs, one-line errors."""

import json

from xlvlm.cli import main
from xlvlm.data.jsonl import write_jsonl
from xlvlm.io import check_outputs
from xlvlm.report.html import report_page


def _files(tmp_path, pair_samples):
    clean, corrupted = pair_samples
    write_jsonl(clean[:2], tmp_path / "clean.jsonl")
    write_jsonl(corrupted[:2], tmp_path / "corrupted.jsonl")
    return ["--model", "organism:original", "--clean", str(tmp_path / "clean.jsonl"),
            "--corrupted", str(tmp_path / "corrupted.jsonl"), "--quiet"]


def test_patch_writes_one_unit(tmp_path, pair_samples, capsys):
    args = _files(tmp_path, pair_samples)
    out = tmp_path / "run"
    assert main(["patch", *args, "--layers", "0,3", "--positions", "grid", "--method", "attribution",
                 "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["stage"] == "patch" and result["method"] == "attribution" and result["sites"] == ["0", "3"]
    assert len(result["pairs"]) == 2 and result["figures"]["grids"] == ["grid_0.png", "grid_1.png"]
    assert check_outputs(out / "result.json") and (out / "recovery.png").is_file()
    page = report_page(tmp_path)
    assert "Activation patching: run" in page and page.count("<img") == 1 + 2 + 2  # mean, pairs, grids
    assert "attribution activation patching on organism:original, 2 pair(s)" in page
    # An existing output is refused in one line, and left as it was.
    assert main(["patch", *args, "--out", str(out)]) == 2
    assert "--out" in capsys.readouterr().err and check_outputs(out / "result.json")


def test_patch_bad_positions_is_one_line(tmp_path, pair_samples, capsys):
    assert main(["patch", *_files(tmp_path, pair_samples), "--positions", "cells", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xlvlm: error: positions 'cells'") and err.count("\n") == 1
    assert not (tmp_path / "r" / "result.json").exists()
