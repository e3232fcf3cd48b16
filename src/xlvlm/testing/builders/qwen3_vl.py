"""Qwen3-VL (Qwen/Qwen3-VL-8B-Instruct): ViT with learned + 2-D rotary positions, 2x2 patch
merger, interleaved M-RoPE Qwen3 decoder, and **deepstack**: the merged features of vision
blocks ``deepstack_visual_indexes`` are added to the residual stream at the image positions right
after decoder blocks 0, 1, 2 (one per index), so what block i+1 reads there is not block i's output.

As the real checkpoint: a Qwen tokenizer with no BOS, ChatML without a default system turn,
``<|vision_start|><|image_pad|><|vision_end|>`` per image, ``<|image_pad|>`` expanded by the
processor to one token per merged patch.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xlvlm.testing.builders._common import family_tokenizer, save, set_generation_ids, text_dims, token_id

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}{%- else -%}"
    "{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif content['type'] == 'video' -%}{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif content['type'] == 'text' -%}{{- content['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def build(folder: str | Path, seed: int = 0, patch_size: int = 4, merge: int = 2) -> Path:
    from transformers import (Qwen2VLImageProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration,
                              Qwen3VLProcessor, Qwen3VLVideoProcessor)

    tokenizer = family_tokenizer(SPECIALS, bos=None, eos="<|im_end|>", pad="<|endoftext|>", add_bos=False)
    # head_dim 16: the M-RoPE sections (temporal, height, width) split its 8 frequencies. 5 blocks so
    # that one past the deepstacked ones (0, 1, 2) reads exactly the previous block's output.
    text = text_dims(tokenizer, head_dim=16, num_hidden_layers=5, rope_parameters={
        "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], "mrope_interleaved": True})
    # 3 vision blocks, each feeding deepstack (the real 27 feed from 8, 16, 24): decoder blocks 0, 1, 2 get them.
    vision = dict(depth=3, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=patch_size,
                  spatial_merge_size=merge, temporal_patch_size=2, out_hidden_size=48, num_position_embeddings=16,
                  deepstack_visual_indexes=[0, 1, 2])
    ids = {name: token_id(tokenizer, tok) for name, tok in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    config = Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    set_generation_ids(model, tokenizer, ["<|im_end|>", "<|endoftext|>"])
    unit = patch_size * merge
    pixels = {"shortest_edge": (2 * unit) ** 2, "longest_edge": (4 * unit) ** 2}
    kwargs = dict(size=pixels, patch_size=patch_size, merge_size=merge, temporal_patch_size=2,
                  image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(**kwargs), tokenizer=tokenizer,
                                 video_processor=Qwen3VLVideoProcessor(**kwargs), chat_template=CHAT_TEMPLATE)
    return save(folder, model, processor)
