"""GLM-4.1V (THUDM/GLM-4.1V-9B-Thinking): ViT with 2-D RoPE and interpolated learned positions,
2x2 patch merger, GLM-4 decoder (partial rotary M-RoPE, extra post-attention / post-MLP norms).

As the real checkpoint: no BOS token; the template starts with the literal ``[gMASK]<sop>`` and
marks turns with ``<|user|>`` / ``<|assistant|>``; ``<|begin_of_image|><|image|><|end_of_image|>``
per image, ``<|image|>`` expanded to one token per merged patch; generation stops at
``<|endoftext|>``, ``<|user|>`` or ``<|observation|>``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xlvlm.testing.builders._common import family_tokenizer, save, set_generation_ids, text_dims, token_id

CHAT_TEMPLATE = (
    "[gMASK]<sop>"
    "{%- for msg in messages -%}"
    "{%- if msg.role == 'system' -%}<|system|>{{ '\\n' }}{{ msg.content if msg.content is string else msg.content[0].text }}"
    "{%- elif msg.role == 'user' -%}<|user|>{{ '\\n' }}"
    "{%- if msg.content is string -%}{{ msg.content }}{%- else -%}"
    "{%- for item in msg.content -%}"
    "{%- if item.type == 'video' -%}<|begin_of_video|><|video|><|end_of_video|>"
    "{%- elif item.type == 'image' -%}<|begin_of_image|><|image|><|end_of_image|>"
    "{%- elif item.type == 'text' -%}{{ item.text }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- elif msg.role == 'assistant' -%}<|assistant|>{{ '\\n' }}"
    "{{ msg.content if msg.content is string else msg.content[0].text }}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{{ '\\n' }}{%- endif -%}"
)

SPECIALS = ["[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>", "<|begin_of_image|>",
            "<|end_of_image|>", "<|image|>", "<|begin_of_video|>", "<|end_of_video|>", "<|video|>"]


def build(folder: str | Path, seed: int = 0, patch_size: int = 4, merge: int = 2) -> Path:
    from transformers import (Glm4vConfig, Glm4vForConditionalGeneration, Glm4vImageProcessor, Glm4vProcessor,
                              Glm4vVideoProcessor)

    tokenizer = family_tokenizer(SPECIALS, bos=None, eos="<|endoftext|>", pad="<|endoftext|>", add_bos=False)
    # head_dim 16 with half of it rotary (the real partial_rotary_factor): M-RoPE sections split 4 frequencies.
    text = text_dims(tokenizer, head_dim=16, rope_parameters={
        "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1], "partial_rotary_factor": 0.5})
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, image_size=16, patch_size=patch_size,
                  spatial_merge_size=merge, temporal_patch_size=2, out_hidden_size=48)
    ids = {name: token_id(tokenizer, tok) for name, tok in [
        ("image_token_id", "<|image|>"), ("video_token_id", "<|video|>"),
        ("image_start_token_id", "<|begin_of_image|>"), ("image_end_token_id", "<|end_of_image|>"),
        ("video_start_token_id", "<|begin_of_video|>"), ("video_end_token_id", "<|end_of_video|>")]}
    config = Glm4vConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)
    torch.manual_seed(seed)
    model = Glm4vForConditionalGeneration(config).eval()
    set_generation_ids(model, tokenizer, ["<|endoftext|>", "<|user|>", "<|observation|>"])
    unit = patch_size * merge
    pixels = {"shortest_edge": (2 * unit) ** 2, "longest_edge": (4 * unit) ** 2}
    kwargs = dict(size=pixels, patch_size=patch_size, merge_size=merge, temporal_patch_size=2)
    processor = Glm4vProcessor(image_processor=Glm4vImageProcessor(**kwargs), tokenizer=tokenizer,
                               video_processor=Glm4vVideoProcessor(**kwargs), chat_template=CHAT_TEMPLATE)
    return save(folder, model, processor)
