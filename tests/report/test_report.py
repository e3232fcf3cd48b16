import json
import re

import pytest
import torch

import xlvlm
from xlvlm.cli import main
from xlvlm.errors import XlvlmError


def test_report_embeds_every_stage(tmp_path, samples, capsys):
    g = torch.Generator().manual_seed(0)
    X_o = torch.randn(16, 8, generator=g)
    rows = [dict(samples[i % len(samples)], id=f"q{i}") for i in range(16)]
    xlvlm.FeatureStore.from_tensors({"1": X_o.abs()}, rows, path=tmp_path / "feats" / "o")
    xlvlm.FeatureStore.from_tensors({"1": X_o.abs() + 1}, rows, path=tmp_path / "feats" / "f")
    run = tmp_path / "run"
    assert main(["concepts", "--features", str(tmp_path / "feats" / "o"), "--layer", "1", "--method", "kmeans",
                 "--n-concepts", "3", "--out", str(run / "concepts"), "--quiet"]) == 0
    assert main(["shift", "--original", str(tmp_path / "feats" / "o"), "--finetuned", str(tmp_path / "feats" / "f"),
                 "--layer", "1", "--n-concepts", "3", "--method", "kmeans", "--out", str(run / "shift")]) == 0
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "Concepts: concepts" in page and "Fine-tuning shift: shift" in page
    assert (run / "concepts" / "dictionary" / "concepts.json").is_file()  # a dictionary, not a stage
    assert page.count("<h2>Concepts:") == 1
    assert "xlvlm concepts --features" in page  # the command that produced the section
    images = re.findall(r'<img[^>]+src="([^"]+)"', page)
    assert len(images) >= 4 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_report_on_empty_folder_is_one_line(tmp_path):
    with pytest.raises(XlvlmError, match="no stage outputs"):
        from xlvlm.report import build_report
        build_report(tmp_path)


def _result(folder, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps(fields))


def test_report_picks_the_renderer_by_stage_not_by_file_name(tmp_path, monkeypatch):
    from xlvlm.report import html

    seen = []
    monkeypatch.setitem(html.RENDERERS, "probe", lambda data, path, root: seen.append(path) or "<h2>probe</h2>")
    _result(tmp_path / "sweep", stage="probe", version=1)  # the folder's name says nothing
    _result(tmp_path / "a" / "b", stage="table", version=1, title="Caption steering", about="what", header=["h"],
            rows=[["cell"]])
    page = html.build_report(tmp_path).read_text()
    assert seen == [tmp_path / "sweep" / "result.json"]
    assert "<h2>probe</h2>" in page and "<h2>Caption steering: a/b</h2>" in page and "<td class=\"l\">cell</td>" in page


def test_only_result_json_files_are_stage_results(tmp_path):
    """Other JSON files (a dictionary's concepts.json, any file without a stage) are not read as
    stage results: a folder with none is refused in one line."""
    from xlvlm.report import build_report

    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "concepts.json").write_text(json.dumps({"settings": {}, "concepts": []}))
    with pytest.raises(XlvlmError, match=r"no stage outputs found \(result.json\)"):
        build_report(tmp_path)
    _result(tmp_path / "c", stage="concepts", version=1)
    assert "<h2>Concepts: c</h2>" in build_report(tmp_path).read_text()


def test_evaluate_out_is_a_stage_result_the_report_shows(tmp_path, capsys):
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps({"id": f"q{i}", "prediction": answer, "answer": "yes",
                                               "answer_type": "yes/no"}) + "\n"
                                   for i, answer in enumerate(["yes", "no", "yes", "yes"])))
    assert main(["evaluate", "--predictions", str(predictions), "--out", str(tmp_path / "run" / "eval" / "result.json")]) == 0
    result = json.loads((tmp_path / "run" / "eval" / "result.json").read_text())
    assert (result["stage"], result["version"], result["accuracy"]) == ("evaluate", 1, 0.75)
    assert main(["report", str(tmp_path / "run")]) == 0
    page = (tmp_path / "run" / "report.html").read_text()
    assert "<h2>Evaluation: eval</h2>" in page and "0.750" in page
