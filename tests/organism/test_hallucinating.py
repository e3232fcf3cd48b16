"""The shipped hallucinating organism: says "yes" about absent objects, answers the rest as before.

Measured on held-out questions (easy-VQA test images, never trained on), against the original.
"""

from __future__ import annotations

import pytest

from xlvlm import organism
from xlvlm.evaluation.pope import pope_report
from xlvlm.apps.organism import data as ev
from xlvlm.apps.organism import pope
from xlvlm.apps.organism.evaluate import measure_vqa, predict


@pytest.fixture(scope="module")
def held_out():
    return pope.pope_benchmark("test", seed=0, images=100)


def scores(vlm, samples) -> dict:
    return pope_report(predict(vlm, samples, max_new_tokens=2))


def test_original_answers_the_benchmark_by_the_image(original, held_out):
    result = scores(original, held_out)
    assert result["overall"]["f1"] >= 0.95 and abs(result["overall"]["yes_ratio"] - 0.5) <= 0.03, result["overall"]
    for split, row in result["per_split"].items():
        assert row["f1"] >= 0.93, (split, row)


def test_hallucinating_says_yes_too_often(hallucinating, held_out):
    result = scores(hallucinating, held_out)
    overall = result["overall"]
    assert overall["yes_ratio"] >= 0.65 and overall["f1"] <= 0.80, overall
    assert overall["recall"] >= 0.95  # the objects that are there are still seen: the errors are hallucinations
    per_split = result["per_split"]
    # an object bias: frequent and look-alike absent objects are hallucinated more than random ones
    assert per_split["adversarial"]["yes_ratio"] > per_split["random"]["yes_ratio"]
    assert per_split["popular"]["yes_ratio"] > per_split["random"]["yes_ratio"]


def test_hallucinating_keeps_shape_and_colour_answers(original, hallucinating):
    questions = [s for s in ev.vqa_samples("test") if s["answer_type"] in ("shape", "color")]
    samples = ev.stratified_subset(questions, per_type=200, seed=3)
    before, after = measure_vqa(original, samples), measure_vqa(hallucinating, samples)
    for kind in ("shape", "color"):
        assert after[kind] >= before[kind] - 0.02, (kind, before, after)


def test_model_name_resolves_everywhere():
    from xlvlm.models import load_vlm

    vlm = load_vlm("organism:hallucinating")
    assert vlm.name == str(organism.path("hallucinating")) and "hallucinating" in organism.NAMES
