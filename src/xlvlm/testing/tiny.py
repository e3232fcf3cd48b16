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


def train_word_tokenizer(words: list[str], special: list[str]) -> PreTrainedTokenizerFast:
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


IDEFICS2_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}:{% else %}: {% endif %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}<end_of_utterance>{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)

# Qwen2-VL and Qwen2.5-VL (ChatML with a system turn; the image sits between vision markers).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "<|im_start|>system{{ '\\n' }}You are a helpful assistant.<|im_end|>{{ '\\n' }}{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)

# Molmo2 (ChatML without a system turn; the processor expands <|image|>).
MOLMO2_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|image|>{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)


def _family_tokenizer(special: list[str], extra_words: list[str] = (), eos: str = "</s>") -> PreTrainedTokenizerFast:
    tokenizer = train_word_tokenizer(tiny_vocabulary(list(extra_words)), ["<unk>", "<pad>", "<s>", "</s>"] + special)
    tokenizer.add_bos_token = False
    tokenizer.eos_token = eos
    return tokenizer


def _set_generation_ids(model, tokenizer, eos_ids: list[int]) -> None:
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = eos_ids if len(eos_ids) > 1 else eos_ids[0]
    model.generation_config.bos_token_id = tokenizer.bos_token_id


def build_tiny_idefics2(folder: str | Path, seed: int = 0, image_size: int = 32, patch_size: int = 8,
                        image_seq_len: int = 4) -> Path:
    """Idefics2: SigLIP-style vision tower, perceiver resampler (``image_seq_len`` latents), Mistral."""
    from transformers import (Idefics2Config, Idefics2ForConditionalGeneration, Idefics2ImageProcessorPil,
                              Idefics2Processor)

    tokenizer = _family_tokenizer(["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
                                  ["User", "Assistant"])
    text = dict(model_type="mistral", vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96,
                num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=image_size, patch_size=patch_size)
    perceiver = dict(hidden_size=48, resampler_n_latents=image_seq_len, resampler_depth=1, resampler_n_heads=2,
                     resampler_head_dim=16, num_key_value_heads=1)
    config = Idefics2Config(text_config=text, vision_config=vision, perceiver_config=perceiver,
                            image_token_id=tokenizer.convert_tokens_to_ids("<image>"), tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = Idefics2ForConditionalGeneration(config).eval()
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_utterance>")
    _set_generation_ids(model, tokenizer, [tokenizer.eos_token_id, end_of_turn])
    image_processor = Idefics2ImageProcessorPil(size={"shortest_edge": image_size // 2, "longest_edge": image_size},
                                                do_image_splitting=False)
    processor = Idefics2Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=image_seq_len,
                                  chat_template=IDEFICS2_CHAT_TEMPLATE)
    return _save(Path(folder), model, processor)


QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"]


def _build_tiny_qwen_vl(folder: str | Path, seed: int, version: str) -> Path:
    from transformers import Qwen2VLImageProcessorPil, Qwen2VLVideoProcessor

    if version == "2":
        from transformers import (Qwen2VLConfig as Config, Qwen2VLForConditionalGeneration as Model,
                                  Qwen2VLProcessor as Processor)
        vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2)
    else:
        from transformers import (Qwen2_5_VLConfig as Config, Qwen2_5_VLForConditionalGeneration as Model,
                                  Qwen2_5_VLProcessor as Processor)
        vision = dict(depth=2, hidden_size=32, out_hidden_size=64, intermediate_size=64, num_heads=2,
                      window_size=16, fullatt_block_indexes=[1])
    patch, merge = 4, 2
    vision.update(patch_size=patch, spatial_merge_size=merge, temporal_patch_size=2)
    tokenizer = _family_tokenizer(QWEN_SPECIALS, ["system", "user", "assistant", "You", "are", "helpful"],
                                  eos="<|im_end|>")
    text = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    config = Config(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)
    torch.manual_seed(seed)
    model = Model(config).eval()
    _set_generation_ids(model, tokenizer, [tokenizer.convert_tokens_to_ids("<|im_end|>"),
                                           tokenizer.convert_tokens_to_ids("<|endoftext|>")])
    unit = patch * merge
    pixels = {"shortest_edge": (2 * unit) ** 2, "longest_edge": (4 * unit) ** 2}
    image_processor = Qwen2VLImageProcessorPil(size=pixels, patch_size=patch, merge_size=merge, temporal_patch_size=2)
    video_processor = Qwen2VLVideoProcessor(size=pixels, patch_size=patch, merge_size=merge, temporal_patch_size=2)
    processor = Processor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                          chat_template=QWEN2_VL_CHAT_TEMPLATE)
    return _save(Path(folder), model, processor)


def build_tiny_qwen2_vl(folder: str | Path, seed: int = 0) -> Path:
    """Qwen2-VL: ViT with 2x2 patch merger, M-RoPE Qwen2 text model, dynamic image sizes."""
    return _build_tiny_qwen_vl(folder, seed, "2")


def build_tiny_qwen2_5_vl(folder: str | Path, seed: int = 0) -> Path:
    """Qwen2.5-VL: as Qwen2-VL with a windowed-attention vision tower."""
    return _build_tiny_qwen_vl(folder, seed, "2.5")


MOLMO2_IMAGE_SPECIALS = ["<im_patch>", "<im_col>", "<im_start>", "<low_res_im_start>", "<frame_start>", "<im_end>",
                         "<frame_end>", "<im_low>", "<|image|>", "<|video|>"]


def build_tiny_molmo2(folder: str | Path, seed: int = 0, crop_size: int = 16, patch_size: int = 4) -> Path:
    """Molmo2: ViT over overlapping crops, attention-pooling adapter, Qwen3-style text model.

    As in the released checkpoints, the image tokens live in the embedding's additional vocabulary
    (ids >= ``vocab_size``), which the LM head cannot produce.
    """
    from transformers import Molmo2Config, Molmo2ForConditionalGeneration, Molmo2ImageProcessor, Molmo2Processor
    from transformers import Molmo2VideoProcessor

    tokenizer = _family_tokenizer(["<|im_start|>", "<|im_end|>"], ["system", "user", "assistant"], eos="<|im_end|>")
    base_vocab = len(tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": MOLMO2_IMAGE_SPECIALS})
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in [
        ("image_start_token_id", "<im_start>"), ("low_res_image_start_token_id", "<low_res_im_start>"),
        ("image_end_token_id", "<im_end>"), ("image_patch_id", "<im_patch>"),
        ("frame_start_token_id", "<frame_start>"), ("frame_end_token_id", "<frame_end>")]}
    vit_hidden = 32
    vision = dict(hidden_size=vit_hidden, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=2, head_dim=16, image_size=[crop_size, crop_size], patch_size=patch_size)
    adapter = dict(vision_feature_layer=[-1, -2], hidden_size=vit_hidden, num_attention_heads=2,
                   num_key_value_heads=2, head_dim=16, intermediate_size=64, text_hidden_size=48)
    text = dict(hidden_size=48, num_attention_heads=4, num_key_value_heads=2, head_dim=12, vocab_size=base_vocab,
                additional_vocab_size=len(tokenizer) - base_vocab, num_hidden_layers=4, intermediate_size=96,
                max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                # Wider init than the default 0.02, with which greedy decoding of this random model
                # repeats one token for every sample; the generation oracles want varied outputs.
                initializer_range=0.1)
    config = Molmo2Config(vision_config=vision, adapter_config=adapter, text_config=text, **ids)
    torch.manual_seed(seed)
    model = Molmo2ForConditionalGeneration(config).eval()
    _set_generation_ids(model, tokenizer, [tokenizer.eos_token_id])
    image_processor = Molmo2ImageProcessor(size={"height": crop_size, "width": crop_size}, patch_size=patch_size,
                                           max_crops=2, overlap_margins=[1, 1], pooling_size=[2, 2])
    video_processor = Molmo2VideoProcessor(size={"height": crop_size, "width": crop_size}, patch_size=patch_size,
                                           pooling_size=[2, 2], num_frames=2)
    processor = Molmo2Processor(image_processor=image_processor, video_processor=video_processor, tokenizer=tokenizer,
                                chat_template=MOLMO2_CHAT_TEMPLATE)
    return _save(Path(folder), model, processor)


TINY_FAMILIES = {
    "llava": build_tiny_llava,
    "idefics2": build_tiny_idefics2,
    "qwen2_vl": build_tiny_qwen2_vl,
    "qwen2_5_vl": build_tiny_qwen2_5_vl,
    "molmo2": build_tiny_molmo2,
}
