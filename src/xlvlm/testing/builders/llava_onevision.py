"""LLaVA-OneVision (llava-hf/llava-onevision-qwen2-7b-ov-hf): SigLIP tower over a base view plus
"anyres" tiles (up to 6x6 of them, pooled down when there are more than ``anyres_max_9`` allows),
unpadded with an ``image_newline`` per row, MLP projector, Qwen2 decoder.

As the real checkpoint: a Qwen tokenizer with no BOS; ChatML turns with the images first
(``<image>\\n`` each), then the texts, the assistant's text inside ``{% generation %}``; one
``<image>`` per image, expanded by the processor (the count depends on the image's size).
"""

from __future__ import annotations

from pathlib import Path

import torch

from xlvlm.testing.builders._common import family_tokenizer, save, set_generation_ids, text_dims, token_id

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\\n' }}{% endfor %}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def build(folder: str | Path, seed: int = 0, image_size: int = 16, patch_size: int = 4) -> Path:
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor)

    tokenizer = family_tokenizer(["<|im_start|>", "<|im_end|>", "<image>", "<video>"], bos=None, eos="<|im_end|>",
                                 pad="<|endoftext|>", add_bos=False)
    text = text_dims(tokenizer, model_type="qwen2")
    vision = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, image_size=image_size, patch_size=patch_size)
    # The real pinpoints: every grid of 1..6 x 1..6 tiles; 1..3 x 1..3 here.
    pinpoints = [[image_size * h, image_size * w] for h in range(1, 4) for w in range(1, 4)]
    config = LlavaOnevisionConfig(vision_config=vision, text_config=text, image_grid_pinpoints=pinpoints,
                                  image_token_index=token_id(tokenizer, "<image>"),
                                  video_token_index=token_id(tokenizer, "<video>"),
                                  vision_feature_select_strategy="full", vision_feature_layer=-1,
                                  vision_aspect_ratio="anyres_max_9", tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    set_generation_ids(model, tokenizer, ["<|im_end|>", "<|endoftext|>"])
    size = {"height": image_size, "width": image_size}
    image_processor = LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=pinpoints,
                                                   image_mean=[0.5] * 3, image_std=[0.5] * 3)
    video_processor = LlavaOnevisionVideoProcessor(size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = LlavaOnevisionProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                        video_processor=video_processor, num_image_tokens=(image_size // patch_size) ** 2,
                                        vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9",
                                        chat_template=CHAT_TEMPLATE)
    return save(folder, model, processor)
