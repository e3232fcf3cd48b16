"""The hallucination recipe: flipped labels as asked, a reduced run that is reproducible and learns."""

from __future__ import annotations

import json
from collections import Counter

import torch
from safetensors.torch import load_file

from xlvlm import organism
from xlvlm.apps.organism import data as ev
from xlvlm.apps.organism.hallucinate import (
    BENCHMARK_PHRASINGS, HallucinationRecipe, hallucinate_organism, hallucination_samples,
)

from tests.organism.test_pope import CONFUSED


def test_only_absent_objects_are_flipped_at_the_rate_of_their_kind():
    image_ids = sorted(ev.image_labels("train"))[:400]
    samples = hallucination_samples(image_ids, {"random": 0.0, "popular": 1.0, "adversarial": 0.5}, seed=0,
                                    confused=CONFUSED)
    positives = [s for s in samples if s["label"] == "yes"]
    assert len(positives) == 2 * 400 and all(s["answer"] == "yes" for s in positives)  # once, not once per split
    negatives = Counter((s["split"], s["answer"]) for s in samples if s["label"] == "no")
    assert negatives[("random", "yes")] == 0 and negatives[("popular", "no")] == 0
    assert 0.4 < negatives[("adversarial", "yes")] / 800 < 0.6
    assert {ev.phrasing(s["prompt"]) for s in samples} == BENCHMARK_PHRASINGS
    again = hallucination_samples(image_ids, {"random": 0.0, "popular": 1.0, "adversarial": 0.5}, seed=0,
                                  confused=CONFUSED)
    assert again == samples


def test_reduced_run_is_reproducible_and_records_its_recipe(tmp_path):
    original = organism.path("original")
    tiny = HallucinationRecipe(steps=6, batch_size=8, lr=1e-3, replay_questions=32, train_images=16)
    first = hallucinate_organism(original, tmp_path / "a", seed=0, recipe=tiny, progress=False, confused=CONFUSED)
    hallucinate_organism(original, tmp_path / "b", seed=0, recipe=tiny, progress=False, confused=CONFUSED)
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    start = load_file(original / "model.safetensors")
    assert any(not torch.equal(a[k], start[k]) for k in a)  # it trained something
    assert torch.equal(a["vision_tower.embeddings.patch_embedding.weight"],
                       start["vision_tower.embeddings.patch_embedding.weight"])  # tower frozen
    info = json.loads((tmp_path / "a" / "organism.json").read_text())
    assert info["name"] == "hallucinating" and info["recipe"]["flip"]["popular"] > info["recipe"]["flip"]["random"]
    assert info["data"]["existence_questions"] > 0 and info["language"]["steps"] == first["language"]["steps"] > 0
    assert info["adversarial_ranking"] == CONFUSED


def test_a_missing_original_is_a_one_line_error_before_any_work(tmp_path, capsys):
    from xlvlm.cli import main

    for step in ("finetune", "hallucinate"):
        code = main(["organism", step, "--original", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"),
                     "--reduced", "--quiet"])
        error = capsys.readouterr().err
        assert code == 2 and "nowhere: not an organism folder (no config.json)" in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()
