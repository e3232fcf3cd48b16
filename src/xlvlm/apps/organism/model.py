"""The organism's architecture: a real ``LlavaForConditionalGeneration``, small, with its processor.

Sizes live in :class:`OrganismSizes`; :func:`build_organism` makes a randomly initialised model
and the processor (word-level tokenizer over the easy-VQA words, ``CLIPImageProcessorPil``,
``LlavaProcessor`` with a LLaVA-1.5-style chat template), which ``save_pretrained`` writes into a
folder that ``AutoModelForImageTextToText`` / ``AutoProcessor.from_pretrained`` load offline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from xlvlm.apps.organism.data import VOCABULARY
from xlvlm.testing.tiny import LLAVA_CHAT_TEMPLATE, train_word_tokenizer

SPECIAL_TOKENS = ["<unk>", "<pad>", "<s>", "</s>", "<image>"]


@dataclass(frozen=True)
class OrganismSizes:
    """Sizes of the vision tower (``vision_*``) and of the Llama (``text_*``)."""

    image_size: int = 64
    patch_size: int = 16
    vision_hidden: int = 128
    vision_layers: int = 2
    vision_heads: int = 4
    text_hidden: int = 128
    text_layers: int = 4
    text_heads: int = 8
    text_kv_heads: int = 8
    text_intermediate: int = 384

    @property
    def image_tokens(self) -> int:
        """Image placeholder tokens per image: patches plus the CLS token (strategy "full")."""
        return (self.image_size // self.patch_size) ** 2 + 1

    def to_dict(self) -> dict:
        return asdict(self)


def build_processor(sizes: OrganismSizes):
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    tokenizer = train_word_tokenizer(VOCABULARY, SPECIAL_TOKENS)
    tokenizer.add_bos_token = False
    # Batched generation needs the prompt flush against the first generated token; init_kwargs
    # is what save_pretrained writes.
    tokenizer.padding_side = "left"
    tokenizer.init_kwargs["padding_side"] = "left"
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": sizes.image_size},
        crop_size={"height": sizes.image_size, "width": sizes.image_size},
    )
    return LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=sizes.patch_size,
        vision_feature_select_strategy="full", chat_template=LLAVA_CHAT_TEMPLATE,
        num_additional_image_tokens=1,
    )


def build_model(sizes: OrganismSizes, tokenizer, seed: int = 0):
    """A randomly initialised ``LlavaForConditionalGeneration`` of ``sizes`` (eval mode)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    vision = CLIPVisionConfig(
        hidden_size=sizes.vision_hidden, intermediate_size=4 * sizes.vision_hidden,
        num_hidden_layers=sizes.vision_layers, num_attention_heads=sizes.vision_heads,
        image_size=sizes.image_size, patch_size=sizes.patch_size, projection_dim=sizes.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=sizes.text_hidden, intermediate_size=sizes.text_intermediate,
        num_hidden_layers=sizes.text_layers, num_attention_heads=sizes.text_heads,
        num_key_value_heads=sizes.text_kv_heads, max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )
    # The last vision layer, CLS token kept: stage 1 trains exactly that token as a classifier.
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1, vision_feature_select_strategy="full", image_seq_length=sizes.image_tokens,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.do_sample = False
    return model


def build_organism(sizes: OrganismSizes, seed: int = 0):
    """``(model, processor)``: a random-weight organism of ``sizes``."""
    processor = build_processor(sizes)
    return build_model(sizes, processor.tokenizer, seed=seed), processor
