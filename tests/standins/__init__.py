"""Test stand-ins: models the tests build that the installed library does not ship.

Molmo v1's model code lives in its hub repository (remote code), so the tests build their own
stand-in of it (:mod:`tests.standins.molmo_standin`). :func:`tiny_builders` and
:func:`build_tiny` are :mod:`xlvlm.testing`'s, with Molmo v1 added: every registered family
has a tiny model in the tests.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xlvlm.testing import build_tiny as library_build_tiny
from xlvlm.testing import tiny_builders as library_builders
from xlvlm.testing.tiny import _family_tokenizer as family_tokenizer


def build_tiny_molmo(folder: str | Path, seed: int = 0, crop_size: int = 16, patch_size: int = 4) -> Path:
    """Molmo v1 (allenai/Molmo-7B-D-0924) as remote code: the stand-in of
    :mod:`tests.standins.molmo_standin`, copied next to ``config.json`` and named in ``auto_map``.

    Like the real checkpoint, the folder loads only with ``trust_remote_code=True``; the tokenizer
    has no BOS (the processor prepends EOS instead) and the image tokens live in the embedding's
    additional vocabulary, which the LM head cannot produce.
    """
    import json
    import shutil

    from tests.standins import molmo_standin as standin

    tokenizer = family_tokenizer(["<|endoftext|>"], ["User", "Assistant"], eos="<|endoftext|>")
    tokenizer.bos_token = None
    tokenizer.pad_token = "<|endoftext|>"
    base_vocab = len(tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": list(standin.IMAGE_TOKENS)})
    module = Path(standin.__file__).stem
    config = standin.MolmoConfig(
        vocab_size=base_vocab, embedding_size=base_vocab, additional_vocab_size=len(tokenizer) - base_vocab,
        hidden_size=48, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        image_size=crop_size, image_patch_size=patch_size, image_emb_dim=32, image_pooling=2,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        architectures=["MolmoForCausalLM"],
        auto_map={"AutoConfig": f"{module}.MolmoConfig", "AutoModelForCausalLM": f"{module}.MolmoForCausalLM"})
    torch.manual_seed(seed)
    model = standin.MolmoForCausalLM(config).eval()
    image_processor = standin.MolmoImageProcessor(base_image_input_size=(crop_size, crop_size),
                                                  image_patch_size=patch_size, image_pooling=2)
    processor = standin.MolmoProcessor(image_processor=image_processor, tokenizer=tokenizer)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    # The hub layout: image processor settings in preprocessor_config.json, both files naming the code.
    auto_processor = {"AutoProcessor": f"{module}.MolmoProcessor"}
    image_config = dict(image_processor.to_dict(), processor_class="MolmoProcessor",
                        auto_map={"AutoImageProcessor": f"{module}.MolmoImageProcessor", **auto_processor})
    (folder / "preprocessor_config.json").write_text(json.dumps(image_config, indent=2, sort_keys=True) + "\n")
    processor_config = {"processor_class": "MolmoProcessor", "auto_map": auto_processor}
    (folder / "processor_config.json").write_text(json.dumps(processor_config, indent=2, sort_keys=True) + "\n")
    shutil.copyfile(standin.__file__, folder / f"{module}.py")
    return folder


def tiny_builders() -> dict:
    """Every tiny builder by ``model_type``: the library's and the tests' own (Molmo v1)."""
    return {**library_builders(), "molmo": build_tiny_molmo}


def build_tiny(family: str, folder: str | Path, seed: int = 0) -> Path:
    """:func:`xlvlm.testing.build_tiny`, and Molmo v1's stand-in for ``"molmo"``."""
    if family == "molmo":
        return build_tiny_molmo(folder, seed=seed)
    return library_build_tiny(family, folder, seed=seed)
