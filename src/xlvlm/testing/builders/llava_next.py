"""LLaVA-NeXT (llava-hf/llava-v1.6-mistral-7b-hf): CLIP tower over a base view plus the tiles of
the best "anyres" grid, features unpadded to the image's aspect ratio with an ``image_newline``
embedding per row, MLP projector, Mistral decoder.

As the real checkpoint: the template has no BOS and the Llama-style tokenizer adds it (one BOS
either way); ``[INST] <image>\\ntext [/INST]``; one ``<image>`` per image, expanded by the
processor to base + unpadded-grid + newline tokens (the count depends on the image's size).
"""

from __future__ import annotations

from pathlib import Path

import torch

from xlvlm.testing.builders._common import family_tokenizer, save, set_generation_ids, text_dims, token_id

# The real template's shape: images first, then the texts of a turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<<SYS>>\\n' + message['content'][0]['text'] + '\\n<</SYS>>\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{{ ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ ' ' + content['text'] }}{% endfor %}"
    "{{ eos_token }}"
    "{% endif %}{% endfor %}"
)


def build(folder: str | Path, seed: int = 0, image_size: int = 16, patch_size: int = 4) -> Path:
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessor
    from transformers import LlavaNextProcessor

    tokenizer = family_tokenizer(["[INST]", "[/INST]", "<image>"], bos="<s>", eos="</s>", pad="<pad>", add_bos=True)
    text = text_dims(tokenizer, model_type="mistral", head_dim=12)
    vision = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, image_size=image_size, patch_size=patch_size, projection_dim=32)
    # The real pinpoints are 1x2, 2x1, 2x2, 3x1, 1x3 tiles of 336 px; the same shapes of 16 px tiles.
    pinpoints = [[image_size * h, image_size * w] for h, w in [(1, 2), (2, 1), (2, 2), (3, 1), (1, 3)]]
    config = LlavaNextConfig(vision_config=vision, text_config=text, image_token_index=token_id(tokenizer, "<image>"),
                             image_grid_pinpoints=pinpoints, vision_feature_select_strategy="default",
                             vision_feature_layer=-2, image_seq_length=(image_size // patch_size) ** 2,
                             tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(config).eval()
    set_generation_ids(model, tokenizer, ["</s>"])
    image_processor = LlavaNextImageProcessor(size={"shortest_edge": image_size},
                                              crop_size={"height": image_size, "width": image_size},
                                              image_grid_pinpoints=pinpoints)
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=CHAT_TEMPLATE)
    return save(folder, model, processor)
