"""What every family builder shares: a word-level tokenizer with the family's named special
tokens, generation ids, and saving model + processor to one folder."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from xlvlm.testing.tiny import tiny_vocabulary

# Words the chat templates of the families put around the user's text.
TURN_WORDS = ["system", "user", "assistant", "model", "User", "Assistant", "You", "are", "helpful"]


def family_tokenizer(specials: list[str], *, bos: str | None, eos: str, pad: str, unk: str = "<unk>",
                     add_bos: bool, named: dict[str, str] | None = None, words: list[str] = (),
                     padding_side: str | None = None) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``specials + words`` (ids in that order, so special ids are small).

    ``bos``/``eos``/``pad``/``unk`` are the family's own strings; ``add_bos`` is whether the real
    tokenizer prepends BOS to every encoded text (Llama-3 and Gemma do, Qwen does not);
    ``named`` are model-specific special tokens that processors read as tokenizer attributes
    (e.g. Gemma3's ``boi_token``), saved in ``tokenizer_config.json`` as the hub files do.
    ``padding_side`` only where the real ``tokenizer_config.json`` names one: a tokenizer's own
    setting overrides a processor's default (InternVL's processor pads left unless told otherwise).
    """
    standard = [t for t in (unk, pad, bos, eos) if t is not None]
    ordered = list(dict.fromkeys(standard + list(specials) + list((named or {}).values())))
    vocab_words = tiny_vocabulary(list(TURN_WORDS) + list(words))
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(ordered + vocab_words))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    # Specials are matched before pre-tokenization, so "<image><image>" stays two tokens.
    backend.add_special_tokens(ordered)
    kwargs = dict(extra_special_tokens=named) if named else {}
    if padding_side is not None:
        kwargs["padding_side"] = padding_side
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token=unk, pad_token=pad, bos_token=bos,
                                        eos_token=eos, add_bos_token=add_bos, add_eos_token=False, **kwargs)
    return tokenizer


def text_dims(tokenizer, **overrides) -> dict:
    """A small decoder (4 layers, hidden 48) with the tokenizer's ids; ``overrides`` win."""
    dims = dict(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    dims.update(overrides)
    return dims


def set_generation_ids(model, tokenizer, eos_tokens: list[str]) -> None:
    """Greedy decoding that stops at the family's end-of-turn tokens and pads with its pad token."""
    eos_ids = list(dict.fromkeys(tokenizer.convert_tokens_to_ids(t) for t in eos_tokens))
    config = model.generation_config
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = eos_ids if len(eos_ids) > 1 else eos_ids[0]
    config.bos_token_id = tokenizer.bos_token_id
    config.do_sample = False


def token_id(tokenizer, token: str) -> int:
    found = tokenizer.convert_tokens_to_ids(token)
    if found is None or found == tokenizer.unk_token_id:
        raise KeyError(f"{token!r} is not in the tokenizer")
    return found


def save(folder: str | Path, model, processor) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
