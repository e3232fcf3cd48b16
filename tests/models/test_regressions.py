"""One named regression test per cause of the issue-12 bugs, each against transformers' own path.

Every test here failed on the adapters before the fix (checked by running this file against
that revision): the adapters rendered the template to text and tokenized it again (a second
BOS where the template writes one), passed images as one flat list (one prompt with N images
for Gemma 3 / SmolVLM), and assumed right padding in teacher forcing (InternVL's processor pads
left).
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import xlvlm
from tests.standins import tiny_builders


def _transformers_ids(vlm, sample) -> list[int]:
    image = Image.open(sample["image"]).convert("RGB")
    messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                             {"type": "text", "text": sample["prompt"]}]}]
    inputs = vlm.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                               return_dict=True, return_tensors="pt")
    return inputs["input_ids"][0].tolist()


def _last_prompt_states(vlm, sample) -> torch.Tensor:
    image = Image.open(sample["image"]).convert("RGB")
    messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                             {"type": "text", "text": sample["prompt"]}]}]
    inputs = vlm.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                               return_dict=True, return_tensors="pt")
    with torch.inference_mode():
        return vlm.model(**inputs, output_hidden_states=True).hidden_states[-1][0, -1]


# Families whose chat template writes BOS while their tokenizer adds one too (as the real
# checkpoints do).
BOS_IN_TEMPLATE = [f for f in ("gemma3", "idefics3", "mllama", "aya_vision", "mistral3") if f in tiny_builders()]


@pytest.mark.parametrize("family", BOS_IN_TEMPLATE)
def test_a_template_that_writes_bos_gets_no_second_one(family, vlm_of, samples):
    vlm = vlm_of(family)
    batch = vlm.encode(samples[:1], padding_side="left")
    ids = batch.input_ids[0].tolist()
    assert ids == _transformers_ids(vlm, samples[0])
    assert ids.count(vlm.tokenizer.bos_token_id) == 1


# Processors that read a flat image list as one prompt with N images.
NESTED_IMAGES = [f for f in ("gemma3", "smolvlm", "mllama") if f in tiny_builders()]


@pytest.mark.parametrize("family", NESTED_IMAGES)
def test_a_batch_gives_each_sample_its_own_image(family, vlm_of, samples, tmp_path):
    vlm = vlm_of(family)
    store = xlvlm.extract(vlm, samples, layers=["final"], out=tmp_path / "s", batch_size=8, progress=False)
    for i, sample in enumerate(samples):
        torch.testing.assert_close(store.features("final")[i], _last_prompt_states(vlm, sample), rtol=0, atol=1e-4)


# Processors that pad on the left whatever the tokenizer says.
LEFT_PADDING = [f for f in ("internvl", "aya_vision") if f in tiny_builders()]


@pytest.mark.parametrize("family", LEFT_PADDING)
def test_teacher_forcing_reads_the_right_positions_when_the_processor_pads_left(family, vlm_of, samples, tmp_path):
    vlm = vlm_of(family)
    store = xlvlm.extract(vlm, samples[:4], layers=["final"], select="last-prompt", out=tmp_path / "s",
                          batch_size=4, progress=False)
    for i, sample in enumerate(samples[:4]):
        torch.testing.assert_close(store.features("final")[i], _last_prompt_states(vlm, sample), rtol=0, atol=1e-4)


def test_paligemma_without_a_chat_template_uses_its_plain_prompt(vlm_of, samples, tmp_path):
    """Released PaliGemma checkpoints ship no chat template: the prompt goes to the processor as
    is (it adds the image tokens, BOS and a newline), the answer as its ``suffix``."""
    vlm = vlm_of("paligemma")
    assert not vlm.chat_template
    store = xlvlm.extract(vlm, samples[:3], layers=["final"], select="token-at:circle", out=tmp_path / "s",
                          batch_size=3, progress=False)
    assert [s["text"] for s in store.samples] == [s["prompt"] for s in samples[:3]]
    for i, sample in enumerate(samples[:3]):
        image = Image.open(sample["image"]).convert("RGB")
        inputs = vlm.processor(text=sample["prompt"], images=image, suffix=sample["answer"], return_tensors="pt")
        inputs.pop("labels")
        with torch.inference_mode():
            hidden = vlm.model(**inputs, output_hidden_states=True).hidden_states[-1][0]
        ids = inputs["input_ids"][0].tolist()
        prefix = int((inputs["token_type_ids"][0] == 0).sum())
        position = ids.index(vlm.tokenizer.convert_tokens_to_ids("circle"), prefix)
        torch.testing.assert_close(store.features("final")[i], hidden[position], rtol=0, atol=1e-4)
