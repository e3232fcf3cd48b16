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
    xlvlm.FeatureStore.from_tensors(tmp_path / "feats" / "o", {"1": X_o.abs()}, rows)
    xlvlm.FeatureStore.from_tensors(tmp_path / "feats" / "f", {"1": X_o.abs() + 1}, rows)
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
