"""PaliGemma (google/paligemma-3b-pt-224): SigLIP tower, linear projector, Gemma decoder.

As the real checkpoint: **no chat template**. The format is the plain prompt: the processor puts
``image_seq_length`` x ``<image>`` first, then the BOS text, the prompt and ``\\n``; it switches
the tokenizer's own BOS off (``add_bos_token = False``) and adds the 1024 ``<locXXXX>`` and 128
``<segXXX>`` tokens, which the model's vocabulary covers as the real one does.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xlvlm.testing.builders._common import family_tokenizer, save, set_generation_ids, text_dims, token_id


def build(folder: str | Path, seed: int = 0, image_size: int = 16, patch_size: int = 4) -> Path:
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor
    from transformers import SiglipImageProcessor

    # Gemma's tokenizer adds BOS; PaliGemmaProcessor turns that off and writes BOS itself.
    tokenizer = family_tokenizer(["<image>"], bos="<bos>", eos="<eos>", pad="<pad>", add_bos=True,
                                 words=["answer", "en", "caption", "detect"])
    image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3,
                                           image_std=[0.5] * 3, resample=3)
    seq_len = (image_size // patch_size) ** 2
    image_processor.image_seq_length = seq_len
    # Built before the model: the processor adds the <loc>/<seg> tokens the vocabulary must cover.
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    text = text_dims(tokenizer, model_type="gemma", head_dim=12)
    vision = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, image_size=image_size, patch_size=patch_size, projection_dim=48)
    config = PaliGemmaConfig(vision_config=vision, text_config=text, image_token_index=token_id(tokenizer, "<image>"),
                             projection_dim=48, hidden_size=48, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = PaliGemmaForConditionalGeneration(config).eval()
    set_generation_ids(model, tokenizer, ["<eos>"])
    # Saved as the hub's tokenizer_config.json has it (the processor turns it off again on loading).
    tokenizer.add_bos_token = True
    return save(folder, model, processor)
