"""Idefics3 (HuggingFaceM4/Idefics3-8B-Llama3): SmolVLM's architecture and processing (see
:mod:`.smolvlm`) on a Llama-3 decoder and tokenizer.

As the real checkpoint: the chat template starts with the literal ``<|begin_of_text|>`` AND the
Llama-3 tokenizer adds BOS, so rendering then tokenizing again gives two BOS;
``processor.apply_chat_template(tokenize=True)`` gives one.
"""

from __future__ import annotations

from pathlib import Path

from xlvlm.testing.builders._common import family_tokenizer
from xlvlm.testing.builders.smolvlm import IMAGE_SPECIALS, idefics3_style


def build(folder: str | Path, seed: int = 0) -> Path:
    tokenizer = family_tokenizer(["<|eot_id|>", "<|reserved_special_token_0|>"] + IMAGE_SPECIALS,
                                 bos="<|begin_of_text|>", eos="<|end_of_text|>", pad="<|reserved_special_token_0|>",
                                 add_bos=True)
    return idefics3_style(folder, seed, family="idefics3", tokenizer=tokenizer, bos_text="<|begin_of_text|>")
