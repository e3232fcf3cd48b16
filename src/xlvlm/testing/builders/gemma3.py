"""Gemma3 (google/gemma-3-4b-it): SigLIP tower, average-pooled to ``mm_tokens_per_image`` soft
tokens, Gemma3 decoder with sliding-window and full attention layers.

As the real checkpoint: the chat template starts with ``{{ bos_token }}`` AND the tokenizer adds
BOS (``add_bos_token: true``), so rendering the template and tokenizing the text again gives two
BOS tokens; ``processor.apply_chat_template(tokenize=True)`` gives one. The template holds one
``<start_of_image>`` per image, which the processor expands to
``\\n\\n<start_of_image>`` + ``image_seq_length`` x ``<image_soft_token>`` + ``<end_of_image>\\n\\n``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xlvlm.testing.builders._common import family_tokenizer, save, set_generation_ids, text_dims, token_id

# The real template's shape (roles "user"/"model", turns closed by <end_of_turn>, text trimmed).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)

NAMED = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}


def build(folder: str | Path, seed: int = 0, image_size: int = 16, patch_size: int = 4,
          tokens_per_image: int = 4) -> Path:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor, Gemma3Processor

    tokenizer = family_tokenizer(["<start_of_turn>", "<end_of_turn>"], bos="<bos>", eos="<eos>", pad="<pad>",
                                 add_bos=True, named=NAMED)
    # 3 sliding-window layers then a full one (the real models repeat 5 sliding + 1 full); a window
    # shorter than the prompts so that the sliding layers do see less than the full one.
    text = text_dims(tokenizer, model_type="gemma3_text", head_dim=12, query_pre_attn_scalar=12,
                     sliding_window=16, layer_types=["sliding_attention"] * 3 + ["full_attention"])
    vision = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, image_size=image_size, patch_size=patch_size)
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=tokens_per_image,
                          boi_token_index=token_id(tokenizer, NAMED["boi_token"]),
                          eoi_token_index=token_id(tokenizer, NAMED["eoi_token"]),
                          image_token_index=token_id(tokenizer, NAMED["image_token"]), tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():  # initialised to zeros, which would give every image the same (zero) features
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(std=config.initializer_range)
    set_generation_ids(model, tokenizer, ["<eos>", "<end_of_turn>"])
    image_processor = Gemma3ImageProcessor(size={"height": image_size, "width": image_size}, do_pan_and_scan=False,
                                           image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=2)
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
                                image_seq_length=tokens_per_image)
    return save(folder, model, processor)
