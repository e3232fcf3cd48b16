"""Shared fixtures: tiny real-architecture models saved to folders, and small image sets."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from PIL import Image

# Tiny models gain nothing from intra-op threads, and on shared cores OpenMP workers spin-wait:
# one thread runs the suite several times faster than two.
torch.set_num_threads(1)



@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI (``.ci/run`` sets CI=true) a skipped test fails: the browser tests skip on a machine
    without chromium or Playwright, and CI must not pass without having run them."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI ({report.longrepr}); .ci/run must install what this test needs"


COLORS = ["red", "blue", "green", "yellow", "teal", "gray", "brown", "black"]
PROMPTS = ["what color is the shape?", "is there a red shape in the image?", "what shape is in the image?",
           "describe this picture", "is there not a blue circle?", "what is the color of the shape?",
           "does the image contain a triangle?", "which shape is shown?"]


def make_samples(folder, n: int = 8, with_answers: bool = True) -> list[dict]:
    """n samples with images of different sizes and prompts of different lengths."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        path = folder / f"img{i}.png"
        image = Image.new("RGB", (40 + 3 * i, 30 + 5 * i), COLORS[i % len(COLORS)])
        image.paste((255, 255, 255), (5, 5, 15 + i, 15))
        image.save(path)
        sample = {"id": f"s{i}", "image": str(path), "prompt": PROMPTS[i % len(PROMPTS)] + " yes" * (i % 3)}
        if with_answers:
            sample["answer"] = f"a {COLORS[i % len(COLORS)]} circle"
        samples.append(sample)
    return samples


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """Build each tiny family lazily, once per session: tiny_dir("llava") -> folder."""
    from tests.standins import build_tiny

    root = tmp_path_factory.mktemp("tiny_models")
    built = {}

    def get(family: str):
        if family not in built:
            built[family] = build_tiny(family, root / family)
        return built[family]

    return get


@pytest.fixture(scope="session")
def vlm_of(tiny_dir):
    import xlvlm
    import xlvlm.models  # xlvlm loads its submodules lazily: a test run alone has not imported it yet

    loaded = {}

    def get(family: str):
        if family not in loaded:
            remote = xlvlm.models.families()[family].remote_code  # Molmo v1: code shipped with the model
            loaded[family] = xlvlm.load_vlm(tiny_dir(family), trust_remote_code=remote)
        return loaded[family]

    return get


@pytest.fixture(scope="session")
def samples(tmp_path_factory):
    return make_samples(tmp_path_factory.mktemp("images"))
