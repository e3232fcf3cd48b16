"""Aya Vision (CohereForAI/aya-vision-8b): SigLIP tower over tiles (+ a global view),
pixel-shuffle projector, Cohere2 decoder (sliding-window and full attention layers).

As the real checkpoint: the chat template starts with ``{{ bos_token }}`` and a system turn, AND
the Cohere tokenizer adds BOS, so rendering then tokenizing again gives two BOS;
``processor.apply_chat_template(tokenize=True)`` gives one. Each ``<image>`` becomes
``<|START_OF_IMG|>``, per tile ``TILE_i`` + patches x ``<|IMG_PATCH|>``, then ``TILE_GLOBAL`` +
patches x ``<|IMG_PATCH|>``, then ``<|END_OF_IMG|>``. **The processor pads on the left**
(its ``padding_side="left"`` text kwarg) and pads by default.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xlvlm.testing.builders._common import family_tokenizer, save, set_generation_ids, text_dims, token_id

# The real template's shape: BOS, a fixed system turn, images before the texts of each turn.
CHAT_TEMPLATE = (
    "{{ bos_token }}<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>You are a helpful assistant.<|END_OF_TURN_TOKEN|>"
    "{%- for message in messages -%}"
    "<|START_OF_TURN_TOKEN|>{{ message.role | replace('user', '<|USER_TOKEN|>')"
    " | replace('assistant', '<|CHATBOT_TOKEN|><|START_RESPONSE|>') | replace('system', '<|SYSTEM_TOKEN|>') }}"
    "{%- if message.content is string -%}{{ message.content }}{%- else -%}"
    "{%- for item in message.content | selectattr('type', 'equalto', 'image') -%}<image>{%- endfor -%}"
    "{%- for item in message.content | selectattr('type', 'equalto', 'text') -%}{{ item.text }}{%- endfor -%}"
    "{%- endif -%}"
    "{%- if message.role == 'assistant' -%}<|END_RESPONSE|>{%- endif -%}<|END_OF_TURN_TOKEN|>"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|><|START_RESPONSE|>{%- endif -%}"
)

TURN_TOKENS = ["<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>",
               "<|SYSTEM_TOKEN|>", "<|START_RESPONSE|>", "<|END_RESPONSE|>"]
IMAGE_TOKENS = ["<image>", "<|START_OF_IMG|>", "<|END_OF_IMG|>", "<|IMG_PATCH|>", "<|IMG_LINE_BREAK|>",
                "TILE_GLOBAL", "TILE"]


def build(folder: str | Path, seed: int = 0, image_size: int = 16, patch_size: int = 4, max_tiles: int = 4) -> Path:
    from transformers import (AyaVisionConfig, AyaVisionForConditionalGeneration, AyaVisionProcessor,
                              GotOcr2ImageProcessor)

    tokenizer = family_tokenizer(TURN_TOKENS + IMAGE_TOKENS, bos="<BOS_TOKEN>", eos="<|END_OF_TURN_TOKEN|>",
                                 pad="<PAD>", unk="<UNK>", add_bos=True, words=["_", "1", "2", "3", "4"])
    text = text_dims(tokenizer, model_type="cohere2", head_dim=12, sliding_window=16,
                     layer_types=["sliding_attention"] * 3 + ["full_attention"])
    vision = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, image_size=image_size, patch_size=patch_size)
    downsample = 2
    config = AyaVisionConfig(vision_config=vision, text_config=text, downsample_factor=downsample,
                             image_token_index=token_id(tokenizer, "<|IMG_PATCH|>"), tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = AyaVisionForConditionalGeneration(config).eval()
    set_generation_ids(model, tokenizer, ["<|END_OF_TURN_TOKEN|>"])
    # As the hub's preprocessor_config.json: crop_to_patches off here, turned on by the processor's defaults.
    image_processor = GotOcr2ImageProcessor(size={"height": image_size, "width": image_size}, crop_to_patches=False,
                                            min_patches=1, max_patches=max_tiles, image_mean=[0.5] * 3,
                                            image_std=[0.5] * 3, resample=3)
    # The processor's patch_size is the vision patch times the downsample factor: 4 tokens per tile here.
    processor = AyaVisionProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                   patch_size=patch_size * downsample, img_size=image_size,
                                   chat_template=CHAT_TEMPLATE)
    return save(folder, model, processor)
