"""A tiny random-weight CLIP (model + processor) saved to a folder, for CLIPScore tests."""

from __future__ import annotations

from pathlib import Path

import torch


def build_tiny_clip(folder, seed: int = 0) -> Path:
    from transformers import (CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTextConfig,
                              CLIPVisionConfig)

    from xlvlm.testing.tiny import tiny_vocabulary, train_word_tokenizer

    tokenizer = train_word_tokenizer(tiny_vocabulary(), ["<unk>", "<pad>", "<s>", "</s>"])
    text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, max_position_embeddings=32, projection_dim=16,
                          pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=16)
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16)).eval()
    processor = CLIPProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32},
                                                                    crop_size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
