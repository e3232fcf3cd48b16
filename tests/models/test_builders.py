"""Every tiny family of ``xlvlm.testing.builders`` through plain transformers, offline: it
reloads with the Auto classes, its processor renders and tokenizes a chat with one image, the
model runs forward and ``generate``, and the facts that tokenization and batching depend on
(BOS, padding side, how images are passed for a batch) are those of the real checkpoint."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import pytest
import torch
from PIL import Image

from xlvlm.testing.builders import BUILDERS, CHECKPOINTS


@dataclass(frozen=True)
class Facts:
    """What the real hub checkpoint of a family (``CHECKPOINTS``) does (see the family's module docstring)."""
    image_token: str            # the token repeated for an image's features
    tokens_per_image: int       # how many of them one 40x30 image gets in the tiny model
    template_has_bos: bool      # the chat template writes the BOS text itself
    tokenizer_adds_bos: bool    # tokenizer(text) prepends BOS
    padding_side: str           # where the processor pads a batch (InternVL and Aya Vision force "left")
    flat_images_batch: bool     # processor(text=[a, b], images=[img, img]) is read as one image per text
    chat_template: bool = True
    bos_first: bool = True      # BOS (where there is one) is the first token, else right after the image


FACTS = {
    "gemma3": Facts("<image_soft_token>", 4, template_has_bos=True,
                    tokenizer_adds_bos=True, padding_side="right", flat_images_batch=False),
    # 2x2 tiles + the global view, 4 tokens each.
    "smolvlm": Facts("<image>", 20, template_has_bos=True,
                     tokenizer_adds_bos=False, padding_side="right", flat_images_batch=False),
    "idefics3": Facts("<image>", 20, template_has_bos=True,
                      tokenizer_adds_bos=True, padding_side="right", flat_images_batch=True),
    # 4 tiles + the thumbnail, 4 tokens each; a Qwen tokenizer without any BOS.
    "internvl": Facts("<IMG_CONTEXT>", 20, template_has_bos=False,
                      tokenizer_adds_bos=False, padding_side="left", flat_images_batch=True),
    "aya_vision": Facts("<|IMG_PATCH|>", 20, template_has_bos=True,
                        tokenizer_adds_bos=True, padding_side="left", flat_images_batch=True),
    # 40x30 -> 32x24 pixels -> 4x3 merged patches (rows closed by [IMG_BREAK] / [IMG_END]).
    "mistral3": Facts("[IMG]", 12, template_has_bos=True,
                      tokenizer_adds_bos=True, padding_side="right", flat_images_batch=True),
    # One <|image|> per image: the features enter through cross-attention layers, not the sequence.
    "mllama": Facts("<|image|>", 1, template_has_bos=True,
                    tokenizer_adds_bos=True, padding_side="right", flat_images_batch=False),
    # No chat template: "<image>" x 16, then BOS, the prompt and "\n", all written by the processor,
    # which turns the tokenizer's own BOS off.
    "paligemma": Facts("<image>", 16, template_has_bos=False,
                       tokenizer_adds_bos=False, padding_side="right", flat_images_batch=True,
                       chat_template=False, bos_first=False),
    # 40x30 -> 32x24 pixels -> 8x6 patches of 4 px -> 4x3 merged tokens.
    "qwen3_vl": Facts("<|image_pad|>", 12, template_has_bos=False,
                      tokenizer_adds_bos=False, padding_side="right", flat_images_batch=True),
    # anyres: 16 base tokens + the 2x2-tile grid unpadded to 8x6 + 6 row newlines.
    "llava_next": Facts("<image>", 70, template_has_bos=False,
                        tokenizer_adds_bos=True, padding_side="right", flat_images_batch=True),
    "llava_onevision": Facts("<image>", 104, template_has_bos=False,
                             tokenizer_adds_bos=False, padding_side="right", flat_images_batch=True),
    # No BOS: the template's "[gMASK]<sop>" opens every prompt. 40x30 -> 3x2 merged patches.
    "glm4v": Facts("<|image|>", 6, template_has_bos=False,
                   tokenizer_adds_bos=False, padding_side="right", flat_images_batch=True),
}

PROMPTS = ["what color is the shape?", "is there a red circle in the image? yes yes yes"]


def test_every_builder_has_its_facts_and_checkpoint():
    assert set(FACTS) == set(BUILDERS) == set(CHECKPOINTS)


_built: dict[str, tuple] = {}


@pytest.fixture
def tiny(family, tmp_path_factory):
    """(processor, model) of the family, built once per session and reloaded from its folder."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if family not in _built:
        folder = BUILDERS[family](tmp_path_factory.mktemp(family))
        processor = AutoProcessor.from_pretrained(folder)
        model = AutoModelForImageTextToText.from_pretrained(folder).eval()
        _built[family] = processor, model
    return _built[family]


def _image(i: int = 0) -> Image.Image:
    return Image.new("RGB", (40 + 7 * i, 30 + 3 * i), ["red", "blue"][i % 2])


def _messages(prompt: str, image=None) -> list[dict]:
    item = {"type": "image", "image": image} if image is not None else {"type": "image"}
    return [{"role": "user", "content": [item, {"type": "text", "text": prompt}]}]


def _inputs(processor, family: str, prompt: str = PROMPTS[0], image=None):
    """transformers' own path for one sample: the chat template tokenized by the processor, or
    (families shipped without a template) the processor called on the plain prompt."""
    image = image if image is not None else _image()
    if FACTS[family].chat_template:
        return processor.apply_chat_template(_messages(prompt, image), add_generation_prompt=True, tokenize=True,
                                             return_dict=True, return_tensors="pt")
    return processor(text=prompt, images=image, return_tensors="pt")


def _prompt_text(processor, family: str, prompt: str) -> str:
    if FACTS[family].chat_template:
        return processor.apply_chat_template(_messages(prompt), add_generation_prompt=True)
    return prompt


@pytest.mark.parametrize("family", list(BUILDERS))
def test_tiny_model_is_small_deep_and_untied(family, tiny):
    _, model = tiny
    text_config = model.config.get_text_config()
    assert model.config.model_type == family
    assert text_config.num_hidden_layers >= 3
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    assert model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()


@pytest.mark.parametrize("family", list(BUILDERS))
def test_decoder_blocks_and_final_norm_are_on_get_decoder(family, tiny):
    _, model = tiny
    decoder = model.get_decoder()
    assert len(decoder.layers) == model.config.get_text_config().num_hidden_layers
    assert isinstance(decoder.norm, torch.nn.Module)


@pytest.mark.parametrize("family", list(BUILDERS))
def test_output_hidden_states_end_with_the_final_norm_output(family, tiny):
    """``hidden_states[i]`` (i < L) is what block i reads (Qwen3-VL's image positions aside, see
    below), but ``hidden_states[L]`` is the final norm's output, not block L-1's."""
    processor, model = tiny
    seen = {}
    decoder = model.get_decoder()
    handles = [decoder.layers[-1].register_forward_hook(lambda m, a, out: seen.update(block=out)),
               decoder.norm.register_forward_hook(lambda m, a, out: seen.update(norm=out))]
    try:
        with torch.no_grad():
            hidden = model(**_inputs(processor, family), output_hidden_states=True).hidden_states
    finally:
        for handle in handles:
            handle.remove()
    block = seen["block"][0] if isinstance(seen["block"], tuple) else seen["block"]
    assert torch.equal(hidden[-1], seen["norm"])
    assert not torch.allclose(hidden[-1], block, atol=1e-3)


@pytest.mark.parametrize("family", list(BUILDERS))
def test_chat_with_one_image_runs_forward_and_generate(family, tiny):
    processor, model = tiny
    inputs = _inputs(processor, family)
    image_id = processor.tokenizer.convert_tokens_to_ids(FACTS[family].image_token)
    assert (inputs["input_ids"][0] == image_id).sum().item() == FACTS[family].tokens_per_image
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    assert len(out.hidden_states) == model.config.get_text_config().num_hidden_layers + 1
    assert out.logits.shape[:2] == inputs["input_ids"].shape
    generated, complaints = _generate_noting_warnings(model, inputs)
    assert 1 <= generated.shape[1] - inputs["input_ids"].shape[1] <= 3
    assert not complaints


def _generate_noting_warnings(model, inputs) -> tuple[torch.Tensor, list[str]]:
    """Greedy ``generate`` of 3 tokens, with what transformers logged (its logger does not
    propagate to the root one) or warned meanwhile."""
    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            generated = model.generate(**inputs, max_new_tokens=3)
    finally:
        logger.removeHandler(handler)
    return generated, seen + [str(w.message) for w in caught]


@pytest.mark.parametrize("family", list(BUILDERS))
def test_the_image_reaches_the_last_position(family, tiny):
    """Random init must not cut the image off (Mllama's cross-attention gates start at 0)."""
    processor, model = tiny
    white, black = Image.new("RGB", (40, 30), "white"), Image.new("RGB", (40, 30), "black")
    with torch.no_grad():
        logits = [model(**_inputs(processor, family, image=im)).logits[0, -1] for im in (white, black)]
    assert not torch.allclose(logits[0], logits[1], atol=1e-4)


@pytest.mark.parametrize("family", list(BUILDERS))
def test_bos_where_the_real_checkpoint_has_it(family, tiny):
    processor, _ = tiny
    facts, tokenizer = FACTS[family], processor.tokenizer
    ids = _inputs(processor, family)["input_ids"][0].tolist()
    assert (tokenizer("what")["input_ids"][0] == tokenizer.bos_token_id) is facts.tokenizer_adds_bos
    has_bos = facts.template_has_bos or facts.tokenizer_adds_bos or not facts.chat_template
    if tokenizer.bos_token is None:  # Qwen-based tokenizers have none at all
        assert not has_bos
        return
    assert ids.count(tokenizer.bos_token_id) == (1 if has_bos else 0)
    if has_bos and facts.bos_first:
        assert ids[0] == tokenizer.bos_token_id
    elif has_bos:  # PaliGemma: the image tokens, then BOS
        image_id = tokenizer.convert_tokens_to_ids(facts.image_token)
        assert ids[:facts.tokens_per_image + 1] == [image_id] * facts.tokens_per_image + [tokenizer.bos_token_id]
    if facts.chat_template:
        text = _prompt_text(processor, family, PROMPTS[0])
        assert text.startswith(tokenizer.bos_token) is facts.template_has_bos
        # The trap of rendering then tokenizing again: a second BOS where both add one.
        twice = tokenizer(text)["input_ids"].count(tokenizer.bos_token_id)
        assert twice == facts.template_has_bos + facts.tokenizer_adds_bos


@pytest.mark.parametrize("family", [f for f in BUILDERS if FACTS[f].chat_template])
def test_answer_turn_extends_the_generation_prompt(family, tiny):
    """Teacher forcing through the template: the chat with the answer as assistant turn starts
    with the tokens of the generation prompt, then the answer's words (then the turn's end)."""
    processor, _ = tiny
    user = _messages(PROMPTS[0], _image())
    answer = [{"role": "assistant", "content": [{"type": "text", "text": "a red circle"}]}]
    prompt, full = (processor.apply_chat_template(chat, add_generation_prompt=chat is user, tokenize=True,
                                                  return_dict=True)["input_ids"][0] for chat in (user, user + answer))
    prompt, full = (list(map(int, ids)) for ids in (prompt, full))
    assert full[:len(prompt)] == prompt
    answer_ids = processor.tokenizer("a red circle", add_special_tokens=False)["input_ids"]
    assert full[len(prompt):len(prompt) + len(answer_ids)] == answer_ids


@pytest.mark.parametrize("family", list(BUILDERS))
def test_batch_of_two_with_images_nested_per_sample(family, tiny):
    processor, model = tiny
    facts = FACTS[family]
    texts = [_prompt_text(processor, family, p) for p in PROMPTS]
    images = [_image(0), _image(1)]
    # Text that already holds BOS must not get a second one from the tokenizer.
    kwargs = dict(padding=True, return_tensors="pt", add_special_tokens=not facts.template_has_bos)
    batch = processor(text=texts, images=[[im] for im in images], **kwargs)
    assert all(ids.tolist().count(processor.tokenizer.bos_token_id) <= 1 for ids in batch["input_ids"])
    mask = batch["attention_mask"]
    assert batch["input_ids"].shape[0] == 2 and not bool(mask.all())
    short = int(mask.sum(1).argmin())
    padded_at = 0 if facts.padding_side == "left" else -1
    assert mask[short, padded_at] == 0
    with torch.no_grad():
        assert model(**batch).logits.shape[0] == 2
    if facts.flat_images_batch:
        flat = processor(text=texts, images=images, **kwargs)
        assert torch.equal(flat["input_ids"], batch["input_ids"])
    else:
        with pytest.raises(ValueError):
            processor(text=texts, images=images, **kwargs)


def _block_inputs_and_hidden_states(model, inputs) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
    """What each decoder block reads (a pre-hook), and ``output_hidden_states``, in one forward."""
    seen: list[torch.Tensor] = []

    def hook(module, args, kwargs):
        seen.append((args[0] if args else kwargs["hidden_states"]).detach().clone())

    handles = [layer.register_forward_pre_hook(hook, with_kwargs=True) for layer in model.get_decoder().layers]
    try:
        with torch.no_grad():
            out = model(**inputs, output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()
    return seen, out.hidden_states


@pytest.mark.parametrize("family", ["qwen3_vl"])
def test_qwen3_vl_deepstack_changes_what_the_next_block_reads_at_image_positions(family, tiny):
    """Deepstack adds visual features after blocks 0-2 at the image positions only: there, block
    i+1 reads something other than ``hidden_states[i + 1]``; everywhere else the two agree."""
    processor, model = tiny
    inputs = _inputs(processor, family)
    reads, hidden = _block_inputs_and_hidden_states(model, inputs)
    at_image = inputs["input_ids"][0] == model.config.image_token_id
    for block in range(1, len(reads)):
        gap = (reads[block][0] - hidden[block][0]).abs().amax(-1)
        assert gap[~at_image].max() < 1e-6
        deepstacked = block - 1 < len(model.config.vision_config.deepstack_visual_indexes)
        assert bool((gap[at_image] > 1e-4).all()) is deepstacked, (block, gap[at_image])


@pytest.mark.parametrize("family", list(BUILDERS))
def test_the_seed_decides_the_weights(family, tmp_path):
    from safetensors.torch import load_file

    weights = [load_file(BUILDERS[family](tmp_path / name, seed=seed) / "model.safetensors")
               for name, seed in [("a", 0), ("b", 0), ("c", 1)]]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
