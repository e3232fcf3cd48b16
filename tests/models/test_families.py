"""Every family's adapter on its tiny model: chosen from the config, structure, image tokens,
prompt lengths, and loading through the plain Auto classes (the path a hub id takes)."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

import xlvlm
from xlvlm.models import _adapter_for, families
from xlvlm.models.molmo import resize_and_pad_torch
from tests.standins import tiny_builders

REGISTRY = families()
FAMILIES = [f for f in sorted(REGISTRY) if f in tiny_builders()]
AUTO_LOADED = [f for f in FAMILIES if REGISTRY[f].auto_class == "AutoModelForImageTextToText"]


def test_every_tiny_family_has_its_adapter():
    for family in tiny_builders():
        assert _adapter_for(family) is REGISTRY[family].adapter


def test_the_registry_serves_each_model_type_once_and_imports_every_family_module():
    from pathlib import Path

    modules = {p.stem for p in Path(xlvlm.models.__file__).parent.glob("*.py")} - {"__init__", "base", "registry"}
    assert modules == {REGISTRY[f].adapter.__module__.rsplit(".", 1)[1] for f in REGISTRY}
    assert all(REGISTRY[f].model_type == f and REGISTRY[f].examples for f in REGISTRY)


@pytest.mark.parametrize("family", FAMILIES)
def test_adapter_is_chosen_from_the_config(family, vlm_of):
    vlm = vlm_of(family)
    assert type(vlm) is REGISTRY[family].adapter
    assert vlm.model.config.model_type == family
    assert vlm.family == family


@pytest.mark.parametrize("family", FAMILIES)
def test_num_layers_and_hidden_size_match_the_config(family, vlm_of):
    vlm = vlm_of(family)
    text_config = vlm.model.config.get_text_config()
    assert vlm.num_layers == text_config.num_hidden_layers
    assert vlm.hidden_size == text_config.hidden_size
    assert vlm.final_norm is not vlm.decoder_layers[-1]
    assert vlm.lm_head.weight.shape[1] == vlm.hidden_size


def _block_inputs(vlm, batch) -> torch.Tensor:
    """What decoder block 0 receives: token embeddings with the image features in place."""
    seen = []

    def hook(module, args, kwargs):
        seen.append((args[0] if args else kwargs["hidden_states"]).detach().clone())

    handle = vlm.decoder_layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        vlm.forward(batch)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_image_tokens_are_exactly_where_image_features_enter(family, vlm_of, tmp_path):
    """Two images of the same size give the same tokens; the embeddings they give differ at the
    image-token positions and nowhere else."""
    vlm = vlm_of(family)
    pair = []
    for name, colour in (("a", (200, 30, 30)), ("b", (20, 60, 220))):
        image = Image.new("RGB", (44, 34), colour)
        image.paste((250, 250, 250), (4, 4, 20, 18))
        image.save(tmp_path / f"{name}.png")
        pair.append({"id": name, "image": str(tmp_path / f"{name}.png"), "prompt": "what color is the shape?"})
    batches = [vlm.encode([sample]) for sample in pair]
    torch.testing.assert_close(batches[0].input_ids, batches[1].input_ids, rtol=0, atol=0)
    image_mask = vlm.image_mask(batches[0])[0]
    assert image_mask.sum() > 0
    changed = (_block_inputs(vlm, batches[0]) - _block_inputs(vlm, batches[1])).abs().amax(-1)[0] > 0
    if family == "mllama":  # the image enters through cross-attention layers, not the embeddings
        assert not changed.any()
    elif family in ("llava_next", "llava_onevision"):
        # Each row of image features ends with the learned image_newline vector, the same for
        # every image; all else that changes is an image token.
        assert changed.sum() > 0 and not (changed & ~image_mask).any()
        assert (image_mask & ~changed).sum() <= 2 * image_mask.sum() ** 0.5  # at most the row ends
    else:
        assert torch.equal(changed, image_mask)
    if family in ("qwen2_vl", "qwen2_5_vl", "molmo2"):
        assert "mm_token_type_ids" in batches[0].inputs  # M-RoPE / bidirectional image attention need them


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_lengths_mark_where_the_answer_starts(family, vlm_of, samples):
    vlm = vlm_of(family)
    answers = [s["answer"] for s in samples[:3]]
    forced = vlm.encode(samples[:3], answers=answers, padding_side="right")
    prompts = vlm.encode(samples[:3], padding_side="right")
    assert forced.prompt_lengths == prompts.lengths
    for b, answer in enumerate(answers):
        n = forced.prompt_lengths[b]
        assert forced.offsets[b] == 0
        assert torch.equal(forced.input_ids[b, :n], prompts.input_ids[b, :n])
        response = forced.input_ids[b, n:forced.lengths[b]].tolist()
        assert vlm.tokenizer.decode(response, skip_special_tokens=True).strip() == answer
        if vlm.chat_template:  # without one (PaliGemma) the text is the prompt and the answer its suffix
            shared = os.path.commonprefix([forced.texts[b], prompts.texts[b]])
            assert answer in forced.texts[b][len(shared):]


@pytest.mark.parametrize("family", AUTO_LOADED)
def test_plain_auto_classes_load_the_tiny_folder_offline(family, tiny_dir, vlm_of):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    folder = tiny_dir(family)
    model = AutoModelForImageTextToText.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    vlm = vlm_of(family)
    assert type(model) is type(vlm.model) and type(processor) is type(vlm.processor)
    loaded = vlm.model.state_dict()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, loaded[key], rtol=0, atol=0)


def test_molmo_standin_keeps_the_remote_code_defects_the_adapter_fixes(tiny_dir, vlm_of, samples):
    """Plain Auto loading of the Molmo v1 stand-in fails as the hub code does on transformers 5.x,
    even after the adapter loaded it (the adapter patches a subclass, not the remote class)."""
    from transformers import AutoModelForCausalLM, AutoProcessor, GenerationConfig

    folder = tiny_dir("molmo")
    vlm = vlm_of("molmo")
    with pytest.raises(AttributeError, match="all_tied_weights_keys"):
        AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    image = Image.open(samples[0]["image"])
    with pytest.raises(ImportError, match="tensorflow"):
        processor.process(text="what color is it?", images=[image])
    batch = {k: v[None] for k, v in vlm._process("what color is it?", image).items()}
    with pytest.raises(AttributeError, match="generate"):
        vlm.model.generate_from_batch(batch, GenerationConfig(max_new_tokens=2, use_cache=True))
    remote_class = type(vlm.model).__mro__[1]
    assert remote_class.__name__ == "MolmoForCausalLM" and "all_tied_weights_keys" not in vars(remote_class)
    assert vlm.generate(samples[:2], max_new_tokens=3)  # the adapter's own decoding works


def test_molmo_image_processing_without_tensorflow_keeps_the_geometry():
    image = np.zeros((30, 40, 3), dtype=np.uint8)
    image[:, :20] = 255
    pixels, mask = resize_and_pad_torch(image, [16, 16], normalize=False)
    assert pixels.shape == (16, 16, 3) and mask.shape == (16, 16)
    rows = np.nonzero(mask.any(1))[0]
    assert (rows[0], rows[-1], mask.sum()) == (2, 13, 12 * 16)  # 12 rows, centred
    assert pixels[~mask].max() == 0
    assert pixels[5, 2].min() == pytest.approx(1.0) and pixels[5, 13].max() == pytest.approx(0.0)
    normalized, _ = resize_and_pad_torch(image, [16, 16])
    assert normalized[5, 2, 0] == pytest.approx((1 - 0.48145466) / 0.26862954, rel=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_loading_twice_gives_identical_weights_and_buffers(family, tiny_dir, vlm_of):
    """Catches anything from_pretrained leaves uninitialised (transformers 5.x materialises
    non-persistent buffers empty and relies on each class to fill them)."""
    first = vlm_of(family).model.state_dict(keep_vars=False)
    first.update(dict(vlm_of(family).model.named_buffers()))
    again = xlvlm.load_vlm(tiny_dir(family), trust_remote_code=REGISTRY[family].remote_code).model
    second = dict(again.state_dict(), **dict(again.named_buffers()))
    assert first.keys() == second.keys()
    for key, value in first.items():
        assert torch.equal(value, second[key]), key


def test_qwen3_vl_layer_is_what_the_next_block_reads(vlm_of, samples):
    """Deepstack adds visual features after blocks 0-2 at the image positions: layer i there is
    block i's output plus that addition (what block i + 1 reads); the block's module name still
    gives its plain output, which is what output_hidden_states holds."""
    vlm = vlm_of("qwen3_vl")
    batch = vlm.encode(samples[:1])
    with torch.inference_mode():
        hidden = vlm.model(**batch.inputs, output_hidden_states=True, use_cache=False).hidden_states
    deepstack = len(vlm.model.config.vision_config.deepstack_visual_indexes)
    keys = [str(i) for i in range(vlm.num_layers)] + [vlm.block_output_name(0)]
    with xlvlm.hooks.record(vlm, keys) as rec:
        vlm.forward(batch)
    image = vlm.image_mask(batch)[0]
    for i in range(vlm.num_layers - 1):
        moved = (rec.stacked(str(i))[0] - hidden[i + 1][0]).abs().amax(-1) > 1e-6
        assert torch.equal(moved, image if i < deepstack else torch.zeros_like(image)), i
    torch.testing.assert_close(rec.stacked(vlm.block_output_name(0)), hidden[1], rtol=0, atol=0)


NO_GRID = {"idefics2", "idefics3", "smolvlm", "mllama", "molmo2", "molmo", "llava_next", "llava_onevision",
           "internvl", "aya_vision"}


@pytest.mark.parametrize("family", FAMILIES)
def test_image_grid_places_every_image_token_or_says_there_is_no_grid(family, vlm_of, samples, tmp_path):
    """Heatmaps need the image tokens' layout: a grid where there is one (a wide image gives more
    columns than rows where the family keeps the aspect ratio), None where there is none."""
    vlm = vlm_of(family)
    path = tmp_path / "wide.png"
    Image.open(samples[7]["image"]).resize((96, 32)).save(path)
    wide = dict(samples[7], id="wide", image=str(path))
    batch = vlm.encode([samples[0], wide])
    for index in range(2):
        layout = vlm.image_grid(batch, index)
        if family in NO_GRID:
            assert layout is None
            continue
        skip, rows, cols = layout
        assert skip + rows * cols == int(vlm.image_mask(batch)[index].sum())
    if family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "glm4v", "mistral3"):
        _, rows, cols = vlm.image_grid(batch, 1)
        assert cols > rows


def test_an_assistant_header_that_differs_with_content_starts_the_response_where_tokens_differ(vlm_of, samples):
    """A template may write the assistant header differently with an answer than as the
    generation prompt; the response then starts at the first token that differs."""
    from xlvlm.testing.tiny import LLAVA_CHAT_TEMPLATE

    vlm = vlm_of("llava")
    differing = LLAVA_CHAT_TEMPLATE.replace("{% elif message['role'] == 'assistant' %}ASSISTANT: ",
                                            "{% elif message['role'] == 'assistant' %}ASSISTANT ")
    assert differing != LLAVA_CHAT_TEMPLATE
    saved = vlm.processor.chat_template
    vlm.processor.chat_template = differing
    try:
        forced = vlm.encode(samples[:2], answers=[s["answer"] for s in samples[:2]])
        prompts = vlm.encode(samples[:2])
    finally:
        vlm.processor.chat_template = saved
    for b, sample in enumerate(samples[:2]):
        assert forced.prompt_lengths[b] == prompts.lengths[b] - 1  # the generation prompt's ":" is not shared
        response = forced.input_ids[b, forced.prompt_lengths[b]:forced.lengths[b]].tolist()
        assert vlm.tokenizer.decode(response, skip_special_tokens=True).strip() == sample["answer"]


@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in ("molmo", "paligemma")])
def test_the_stored_text_replays_the_forward_pass(family, vlm_of, samples):
    """``text`` in a store is the rendered template: given to the processor with the sample's
    image (BOS left to the text when it starts with it, as transformers does), it gives the
    tokens the features were recorded on."""
    vlm = vlm_of(family)
    batch = vlm.encode(samples[:1])
    text = batch.texts[0]
    bos = vlm.tokenizer.bos_token
    image = Image.open(samples[0]["image"]).convert("RGB")
    replay = vlm.processor(text=[text], images=[[image]], return_tensors="pt",
                           add_special_tokens=not (bos and text.startswith(bos)))
    assert replay["input_ids"][0].tolist() == batch.input_ids[0].tolist()
