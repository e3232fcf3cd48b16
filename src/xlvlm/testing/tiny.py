"""Builders of tiny random-weight VLMs of the real transformers classes.

Each builder writes a folder that ``from_pretrained`` (and so ``xlvlm.load_vlm``) loads
offline: model weights, config, tokenizer, image processor, processor with a chat template.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders
from transformers import PreTrainedTokenizerFast

LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>{{ '\\n' }}{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{{ '\\n' }}"
    "{% elif message['role'] == 'assistant' %}ASSISTANT: "
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}"
    "{{ eos_token }}{{ '\\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

BASE_WORDS = (
    "USER ASSISTANT : ? . , yes no a an the is there what shape color colour of in image picture "
    "red green blue yellow black gray grey teal brown circle rectangle triangle square cat dog "
    "photo this describe does contain not shown which kitchen beach forest happy sad man woman"
).split()


def tiny_vocabulary(extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    words = list(dict.fromkeys(BASE_WORDS + list(extra)))
    return words


def train_word_tokenizer(words: list[str], special: list[str], lowercase: bool = False) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is ``special + words`` (ids in that order).

    Words are split on whitespace and punctuation; decoding joins with spaces. Unknown words map
    to ``<unk>``.
    """
    vocab = {tok: i for i, tok in enumerate(list(dict.fromkeys(special + words)))}
    model = models.WordLevel(vocab=vocab, unk_token="<unk>")
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    # Specials are matched before pre-tokenization, so "<image><image>" stays two tokens.
    tok.add_special_tokens(special)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",
    )
    return fast


def _save(folder: Path, model, processor) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_llava(folder: str | Path, seed: int = 0, image_size: int = 32, patch_size: int = 8) -> Path:
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tokenizer = train_word_tokenizer(tiny_vocabulary(), ["<unk>", "<pad>", "<s>", "</s>", "<image>"])
    tokenizer.add_bos_token = False
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=image_size, patch_size=patch_size, projection_dim=32)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                       pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-2, vision_feature_select_strategy="full")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                               vision_feature_select_strategy="full", chat_template=LLAVA_CHAT_TEMPLATE,
                               num_additional_image_tokens=1)
    return _save(Path(folder), model, processor)


TINY_FAMILIES = {"llava": build_tiny_llava}


def build_tiny(family: str, folder: str | Path, seed: int = 0) -> Path:
    """Build a tiny random-weight model of ``family`` into ``folder`` and return the folder."""
    return TINY_FAMILIES[family](folder, seed=seed)
