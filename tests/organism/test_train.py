"""Training the organism: a reduced run learns, is reproducible, and trains what the model computes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from xlvlm.apps.organism import data as ev
from xlvlm.apps.organism.finetune import finetune_organism
from xlvlm.apps.organism.train import Encoder, answer_logits, load_images, tokenize, train_organism, vision_features
from xlvlm.apps.organism.vision import pixel_tensor


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    folder = tmp_path_factory.mktemp("organism") / "original"
    info = train_organism(folder, seed=0, reduced=True, progress=False)
    return folder, info


def test_reduced_training_lowers_the_loss(reduced):
    _, info = reduced
    for stage in ("text", "align", "joint"):
        assert info[stage]["steps"] > 0
    assert info["text"]["last_loss"] < 0.8 * info["text"]["first_loss"], info["text"]
    assert info["joint"]["last_loss"] < info["align"]["first_loss"], (info["align"], info["joint"])


def test_training_is_deterministic_given_the_seed(reduced, tmp_path):
    folder, _ = reduced
    train_organism(tmp_path / "again", seed=0, reduced=True, progress=False)
    first, second = load_file(folder / "model.safetensors"), load_file(tmp_path / "again" / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_training_forward_equals_the_model_forward(reduced):
    """Stage 2 runs projector + language model on cached vision features: same logits as forward()."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder, _ = reduced
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    samples = ev.vqa_samples("test")[:4] + ev.caption_samples("test", with_color=True)[:2]
    image_ids = sorted({s["image_id"] for s in samples})
    row = {image_id: i for i, image_id in enumerate(image_ids)}
    images = load_images([ev.image_paths("test")[i] for i in image_ids])
    features = vision_features(model, pixel_tensor(images, processor.image_processor))
    encoder = Encoder(processor)
    batch = tokenize(samples, encoder, row)
    with torch.no_grad():
        logits, targets = answer_logits(model, batch.ids, batch.attention, batch.answer_mask, features[batch.image])
    expected_logits, expected_targets = [], []
    for s in samples:
        user = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": s["prompt"]}]}]
        full = user + [{"role": "assistant", "content": [{"type": "text", "text": s["answer"]}]}]
        image = [images[row[s["image_id"]]]]
        prompt_ids = processor(text=[processor.apply_chat_template(user, add_generation_prompt=True, tokenize=False)],
                               images=image, return_tensors="pt")["input_ids"][0]
        inputs = processor(text=[processor.apply_chat_template(full, tokenize=False)], images=image, return_tensors="pt")
        assert prompt_ids.tolist() == encoder.prompt_ids(s["prompt"])
        n, k = len(prompt_ids), len(encoder.answer_ids(s["answer"]))
        with torch.no_grad():
            out = model(**inputs).logits[0]
        expected_logits.append(out[n - 1: n - 1 + k])
        expected_targets.append(inputs["input_ids"][0, n: n + k])
    assert torch.equal(targets, torch.cat(expected_targets))
    torch.testing.assert_close(logits, torch.cat(expected_logits), atol=1e-5, rtol=1e-5)


def test_reduced_finetuning_runs_from_the_original_and_lowers_its_loss(reduced, tmp_path):
    folder, _ = reduced
    info = finetune_organism(folder, tmp_path / "finetuned", seed=0, reduced=True, progress=False)
    assert (tmp_path / "finetuned" / "model.safetensors").is_file()
    assert info["language"]["last_loss"] < info["language"]["first_loss"], info["language"]
