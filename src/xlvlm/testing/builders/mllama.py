"""Mllama (meta-llama/Llama-3.2-11B-Vision-Instruct): tiled vision encoder whose features reach
the Llama-3 decoder only through gated cross-attention layers interleaved with the self-attention
ones; the text holds ONE ``<|image|>`` token per image (not expanded).

As the real checkpoint: the chat template starts with ``{{- bos_token }}`` AND the tokenizer adds
BOS (double BOS if rendered then tokenized; one through ``apply_chat_template(tokenize=True)``).
``<|image|>`` lies past the text vocabulary (``id == text_config.vocab_size``; the embedding
has 8 extra rows, the LM head cannot produce it). Random init leaves the cross-attention gates
at 0 (so the image could not change the text); the builder opens them as trained weights are.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import AddedToken

from xlvlm.testing.builders._common import family_tokenizer, save, set_generation_ids, text_dims, token_id

# The real template's shape without the tool-calling and date parts: no system turn when the
# conversation has images and none was given.
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set system_message = messages[0]['content'] if messages[0]['content'] is string"
    " else messages[0]['content'][0]['text'] -%}{%- set messages = messages[1:] -%}"
    "{%- else -%}{%- set system_message = '' -%}{%- endif -%}"
    "{%- set ns = namespace(has_images=false) -%}"
    "{%- for message in messages -%}{%- if message['content'] is not string -%}"
    "{%- for content in message['content'] -%}{%- if content['type'] == 'image' -%}"
    "{%- set ns.has_images = true -%}{%- endif -%}{%- endfor -%}{%- endif -%}{%- endfor -%}"
    "{%- if not ns.has_images or system_message -%}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' + system_message + '<|eot_id|>' }}{%- endif -%}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['content'] is string -%}{{- message['content'] }}{%- else -%}"
    "{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' -%}{{- '<|image|>' }}"
    "{%- elif content['type'] == 'text' -%}{{- content['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{{- '<|eot_id|>' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif -%}"
)

SPECIALS = ["<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>",
            "<|finetune_right_pad_id|>"]


def build(folder: str | Path, seed: int = 0, tile_size: int = 16, patch_size: int = 4, max_tiles: int = 4) -> Path:
    from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaImageProcessor, MllamaProcessor

    tokenizer = family_tokenizer(SPECIALS, bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<|finetune_right_pad_id|>",
                                 add_bos=True)
    tokenizer.add_tokens([AddedToken("<|image|>", special=True, normalized=False)], special_tokens=True)
    image_id = token_id(tokenizer, "<|image|>")
    assert image_id == len(tokenizer) - 1
    # 5 layers of which the 4th (index 3) is a cross-attention layer: the real 40 have one every 5th from 3.
    # A wider init than 0.02, with which greedy answers of different samples mostly coincide.
    text = text_dims(tokenizer, model_type="mllama_text_model", vocab_size=image_id, num_hidden_layers=5,
                     cross_attention_layers=[3], initializer_range=0.1)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_global_layers=1, attention_heads=2,
                  image_size=tile_size, patch_size=patch_size, max_num_tiles=max_tiles,
                  intermediate_layers_indices=[0], vision_output_dim=32 * 2)
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=image_id)
    torch.manual_seed(seed)
    model = MllamaForConditionalGeneration(config).eval()
    with torch.no_grad():  # zero-initialised tanh gates: open them so that images matter
        for name, param in model.named_parameters():
            if name.rsplit(".", 1)[-1] in ("gate", "cross_attn_attn_gate", "cross_attn_mlp_gate"):
                param.fill_(0.75)
    set_generation_ids(model, tokenizer, ["<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"])
    image_processor = MllamaImageProcessor(size={"height": tile_size, "width": tile_size}, max_image_tiles=max_tiles)
    processor = MllamaProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    return save(folder, model, processor)
