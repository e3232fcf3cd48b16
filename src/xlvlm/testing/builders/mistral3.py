"""Mistral3 (mistralai/Mistral-Small-3.1-24B-Instruct-2503): Pixtral tower at the image's own
aspect ratio, 2x2 patch merger, Mistral decoder; processor ``PixtralProcessor``.

As the real checkpoint: the chat template starts with ``{{- bos_token }}`` and a system prompt
AND the tokenizer adds BOS, so rendering then tokenizing again gives two BOS;
``processor.apply_chat_template(tokenize=True)`` gives one. The template has no generation
prompt: the answer follows ``[/INST]``. Each ``[IMG]`` becomes a grid of merged patches, rows of
``[IMG]`` ended by ``[IMG_BREAK]``, the last by ``[IMG_END]``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xlvlm.testing.builders._common import family_tokenizer, save, set_generation_ids, text_dims, token_id

CHAT_TEMPLATE = (
    "{%- set default_system_message = 'You are a helpful assistant.' -%}"
    "{{- bos_token -}}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set system_message = messages[0]['content'] if messages[0]['content'] is string"
    " else messages[0]['content'][0]['text'] -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set system_message = default_system_message -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{{- '[SYSTEM_PROMPT]' + system_message + '[/SYSTEM_PROMPT]' -}}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{%- if message['content'] is string -%}{{- '[INST]' + message['content'] + '[/INST]' -}}"
    "{%- else -%}{{- '[INST]' -}}{%- for block in message['content'] -%}"
    "{%- if block['type'] == 'text' -%}{{- block['text'] -}}"
    "{%- elif block['type'] in ['image', 'image_url'] -%}{{- '[IMG]' -}}{%- endif -%}"
    "{%- endfor -%}{{- '[/INST]' -}}{%- endif -%}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{%- if message['content'] is string -%}{{- message['content'] + eos_token -}}"
    "{%- else -%}{{- message['content'][0]['text'] + eos_token -}}{%- endif -%}"
    "{%- endif -%}{%- endfor -%}"
)

SPECIALS = ["[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[IMG]", "[IMG_BREAK]", "[IMG_END]"]


def build(folder: str | Path, seed: int = 0, longest_edge: int = 32, patch_size: int = 4, merge: int = 2) -> Path:
    from transformers import (Mistral3Config, Mistral3ForConditionalGeneration, PixtralImageProcessor,
                              PixtralProcessor)

    tokenizer = family_tokenizer(SPECIALS, bos="<s>", eos="</s>", pad="<pad>", add_bos=True)
    text = text_dims(tokenizer, model_type="mistral", head_dim=12)
    vision = dict(model_type="pixtral", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, head_dim=16, image_size=longest_edge, patch_size=patch_size)
    config = Mistral3Config(vision_config=vision, text_config=text, spatial_merge_size=merge,
                            image_token_index=token_id(tokenizer, "[IMG]"), tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = Mistral3ForConditionalGeneration(config).eval()
    set_generation_ids(model, tokenizer, ["</s>"])
    image_processor = PixtralImageProcessor(size={"longest_edge": longest_edge},
                                            patch_size={"height": patch_size, "width": patch_size})
    processor = PixtralProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                                 spatial_merge_size=merge, chat_template=CHAT_TEMPLATE)
    return save(folder, model, processor)
