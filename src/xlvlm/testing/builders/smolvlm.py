"""SmolVLM (HuggingFaceTB/SmolVLM-Instruct): SigLIP tower over image tiles, pixel-shuffle
connector (``scale_factor``), Llama-style SmolLM decoder. Its processor needs ``num2words``.

As the real checkpoint: the chat template starts with the literal ``<|im_start|>``, which is the
tokenizer's ``bos_token``; the tokenizer adds no BOS. Images are split into a grid of tiles plus
a global view: each ``<image>`` becomes, per tile, ``<fake_token_around_image><row_r_col_c>`` +
``image_seq_len`` x ``<image>``, then ``<fake_token_around_image><global-img>`` + the same for
the global view, closed by ``<fake_token_around_image>``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xlvlm.testing.builders._common import family_tokenizer, save, set_generation_ids, text_dims, token_id

# The real template's shape: "<|im_start|>User:<image>text<end_of_utterance>\nAssistant:".
CHAT_TEMPLATE = (
    "{{ bos_text }}{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}{{ ': ' + message['content'] }}{% else %}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}"
    "{% if line['type'] == 'text' %}{{ line['text'] }}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# Tiles per side at most: the real processors name rows and columns up to 6 (real grids are 4x4 or less).
MAX_GRID = 4
IMAGE_SPECIALS = (["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]
                  + [f"<row_{r}_col_{c}>" for r in range(1, MAX_GRID + 1) for c in range(1, MAX_GRID + 1)])


def idefics3_style(folder: str | Path, seed: int, *, family: str, tokenizer, bos_text: str, image_size: int = 16,
                   patch_size: int = 4, scale_factor: int = 2) -> Path:
    """Idefics3 and SmolVLM share the architecture and processing; they differ in classes and tokenizer.

    A tile is ``image_size`` pixels; the processor resizes the longest edge to 2 tiles, so a
    40x30 image becomes a 2x2 grid (+ the global view), each tile giving
    ``(image_size / patch_size)**2 / scale_factor**2`` image tokens (4 here; 81 or 169 real).
    """
    import transformers

    prefix = {"smolvlm": "SmolVLM", "idefics3": "Idefics3"}[family]
    Config, Model = (getattr(transformers, prefix + name) for name in ("Config", "ForConditionalGeneration"))
    ImageProcessor, Processor = (getattr(transformers, prefix + name) for name in ("ImageProcessor", "Processor"))
    text = text_dims(tokenizer, model_type="llama")
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=image_size, patch_size=patch_size)
    config = Config(text_config=text, vision_config=vision, scale_factor=scale_factor,
                    image_token_id=token_id(tokenizer, "<image>"), tie_word_embeddings=False,
                    pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = Model(config).eval()
    set_generation_ids(model, tokenizer, ["<end_of_utterance>", tokenizer.eos_token])
    image_processor = ImageProcessor(size={"longest_edge": 2 * image_size}, max_image_size={"longest_edge": image_size},
                                     do_image_splitting=True)
    seq_len = (image_size // patch_size) ** 2 // scale_factor ** 2
    parts = dict(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=seq_len,
                 chat_template=CHAT_TEMPLATE.replace("{{ bos_text }}", bos_text))
    if family == "smolvlm":
        parts["video_processor"] = transformers.SmolVLMVideoProcessor(
            size={"longest_edge": 2 * image_size}, max_image_size={"longest_edge": image_size})
    return save(folder, model, Processor(**parts))


def build(folder: str | Path, seed: int = 0) -> Path:
    # SmolLM's specials: BOS <|im_start|>, pad <|im_end|>, unk <|endoftext|>, no BOS added.
    tokenizer = family_tokenizer(["<|im_start|>", "<|im_end|>", "<video>"] + IMAGE_SPECIALS, bos="<|im_start|>",
                                 eos="<end_of_utterance>", pad="<|im_end|>", unk="<|endoftext|>", add_bos=False)
    return idefics3_style(folder, seed, family="smolvlm", tokenizer=tokenizer, bos_text="<|im_start|>")
