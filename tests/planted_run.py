"""A small run folder from planted features: two stores (the second shifted by +0.5), and the
concepts and shift stages the CLI writes from them. Used where a test needs a real run folder
without a model (the report in a browser, serve over HTTP)."""

from pathlib import Path

import torch

import xlvlm
from xlvlm.cli import main


def concepts_and_shift_run(root: Path, samples: list[dict]) -> Path:
    """Stores ``root/o`` and ``root/f`` (12 rows of 6 features, layer "1") and ``root/run`` with
    ``concepts/`` (k-means, 3 concepts) and ``shift/``; returns ``root/run``."""
    g = torch.Generator().manual_seed(0)
    rows = [dict(samples[i % len(samples)], id=f"q{i}") for i in range(12)]
    X = torch.randn(12, 6, generator=g).abs()
    xlvlm.FeatureStore.from_tensors({"1": X}, rows, path=root / "o")
    xlvlm.FeatureStore.from_tensors({"1": X + 0.5}, rows, path=root / "f")
    run = root / "run"
    assert main(["concepts", "--features", str(root / "o"), "--layer", "1", "--method", "kmeans", "--n-concepts", "3",
                 "--out", str(run / "concepts"), "--quiet"]) == 0
    assert main(["shift", "--original", str(root / "o"), "--finetuned", str(root / "f"), "--layer", "1",
                 "--n-concepts", "3", "--method", "kmeans", "--out", str(run / "shift")]) == 0
    return run
