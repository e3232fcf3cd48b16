"""InternVL, transformers-native (OpenGVLab/InternVL3_5-8B-HF): InternViT tower over 448-px
tiles (plus a thumbnail), pixel-unshuffle MLP projector, Qwen3 decoder.

As the real checkpoint: a Qwen tokenizer with no BOS at all; ChatML template writing one
``<IMG_CONTEXT>`` per image, which the processor expands to ``<img>`` + ``image_seq_length`` x
tiles x ``<IMG_CONTEXT>`` + ``</img>``. **The processor pads on the left** (its default
``padding_side="left"`` text kwarg), whatever the tokenizer says.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xlvlm.testing.builders._common import family_tokenizer, save, set_generation_ids, text_dims, token_id

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

NAMED = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
         "video_token": "<video>"}


def build(folder: str | Path, seed: int = 0, image_size: int = 16, patch_size: int = 4, max_tiles: int = 4) -> Path:
    from transformers import (GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration,
                              InternVLProcessor, InternVLVideoProcessor)

    tokenizer = family_tokenizer(["<|im_start|>"], bos=None, eos="<|im_end|>", pad="<|endoftext|>", add_bos=False,
                                 named=NAMED)
    text = text_dims(tokenizer, model_type="qwen3", head_dim=12)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=[image_size, image_size], patch_size=[patch_size, patch_size])
    # downsample_ratio 0.5 merges 2x2 patches: (16 / 4)**2 / 4 = 4 tokens per tile.
    seq_len = int((image_size // patch_size) ** 2 * 0.5 ** 2)
    config = InternVLConfig(vision_config=vision, text_config=text, image_token_id=token_id(tokenizer, "<IMG_CONTEXT>"),
                            image_seq_length=seq_len, downsample_ratio=0.5, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config).eval()
    set_generation_ids(model, tokenizer, ["<|im_end|>", "<|endoftext|>"])
    size = {"height": image_size, "width": image_size}
    # crop_to_patches off here, turned on by the processor's defaults (as with the hub's files).
    image_processor = GotOcr2ImageProcessor(size=size, crop_to_patches=False, min_patches=1, max_patches=max_tiles)
    video_processor = InternVLVideoProcessor(size=size)
    processor = InternVLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                                  image_seq_length=seq_len, chat_template=CHAT_TEMPLATE)
    return save(folder, model, processor)
