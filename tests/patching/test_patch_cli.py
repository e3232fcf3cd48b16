"""``xlvlm patch`` on the organism: one unit of outputs, its report section and serve tab, and
one-line errors."""

import json

import pytest

from xlvlm.cli import main
from xlvlm.data.jsonl import write_jsonl
from xlvlm.io import check_outputs
from xlvlm.report.html import report_page


def _files(folder, pair_samples):
    clean, corrupted = pair_samples
    write_jsonl(clean[:2], folder / "clean.jsonl")
    write_jsonl(corrupted[:2], folder / "corrupted.jsonl")
    return ["--model", "organism:original", "--clean", str(folder / "clean.jsonl"),
            "--corrupted", str(folder / "corrupted.jsonl"), "--quiet"]


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory, pair_samples):
    """(run folder, CLI arguments) of one `xlvlm patch --method attribution --positions grid`."""
    root = tmp_path_factory.mktemp("patch_run")
    args = _files(root, pair_samples)
    assert main(["patch", *args, "--layers", "0,3", "--positions", "grid", "--method", "attribution",
                 "--out", str(root / "run")]) == 0
    return root, args


def test_patch_writes_one_unit(patch_run, capsys):
    root, args = patch_run
    out = root / "run"
    result = json.loads((out / "result.json").read_text())
    assert result["stage"] == "patch" and result["method"] == "attribution" and result["sites"] == ["0", "3"]
    assert len(result["pairs"]) == 2 and result["figures"]["grids"] == ["grid_0.png", "grid_1.png"]
    assert check_outputs(out / "result.json") and (out / "recovery.png").is_file()
    page = report_page(root)
    assert "Activation patching: run" in page and page.count("<img") == 1 + 2 + 2  # mean, pairs, grids
    assert "attribution activation patching on organism:original, 2 pair(s)" in page
    # An existing output is refused in one line, and left as it was.
    assert main(["patch", *args, "--out", str(out)]) == 2
    assert "--out" in capsys.readouterr().err and check_outputs(out / "result.json")


def test_serve_lists_the_pairs_and_their_maps(patch_run):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from xlvlm.serve.app import create_app

    root, _ = patch_run
    results = TestClient(create_app(root), base_url="http://127.0.0.1").get("/api/patching").json()
    assert [r["folder"] for r in results] == ["run"] and results[0]["sites"] == ["0", "3"]
    first = results[0]["pairs"][0]
    assert first["id"] == "pair0" and len(first["recovery"]) == 2 and len(first["recovery"][0]) == 17
    assert [f["path"] for f in first["figures"]] == ["run/pair_0.png", "run/grid_0.png"]


def test_patch_bad_positions_is_one_line(tmp_path, pair_samples, capsys):
    assert main(["patch", *_files(tmp_path, pair_samples), "--positions", "cells", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xlvlm: error: positions 'cells'") and err.count("\n") == 1
    assert not (tmp_path / "r" / "result.json").exists()
