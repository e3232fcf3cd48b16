"""Tiny random-weight models of the VLM families that :mod:`xlvlm.testing.tiny` does not build,
one module per family, each faithful to its real hub checkpoint where tokenization and batching
depend on it (special tokens, chat template, BOS, padding side, image processor class).

``BUILDERS`` maps a family's ``config.model_type`` to ``build(folder, seed=0) -> Path``; the
family's module (and transformers' classes) is imported only when its builder is called.
``CHECKPOINTS`` names the hub checkpoint each tiny model copies the processing of.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

# model_type (= the module of this package building it) -> the hub checkpoint it is modelled on.
CHECKPOINTS = {
    "gemma3": "google/gemma-3-4b-it",
    "smolvlm": "HuggingFaceTB/SmolVLM-Instruct",
    "idefics3": "HuggingFaceM4/Idefics3-8B-Llama3",
    "internvl": "OpenGVLab/InternVL3_5-8B-HF",
    "aya_vision": "CohereForAI/aya-vision-8b",
    "mistral3": "mistralai/Mistral-Small-3.1-24B-Instruct-2503",
    "mllama": "meta-llama/Llama-3.2-11B-Vision-Instruct",
    "paligemma": "google/paligemma-3b-pt-224",
    "qwen3_vl": "Qwen/Qwen3-VL-8B-Instruct",
    "llava_next": "llava-hf/llava-v1.6-mistral-7b-hf",
    "llava_onevision": "llava-hf/llava-onevision-qwen2-7b-ov-hf",
    "glm4v": "THUDM/GLM-4.1V-9B-Thinking",
}
FAMILIES = tuple(CHECKPOINTS)


def _lazy(module: str) -> Callable[..., Path]:
    def build(folder: str | Path, seed: int = 0) -> Path:
        return importlib.import_module(f"{__name__}.{module}").build(folder, seed=seed)

    build.__name__ = build.__qualname__ = f"build_{module}"
    build.__doc__ = f"Build the tiny {module} model into ``folder`` (see ``{__name__}.{module}``)."
    return build


BUILDERS: dict[str, Callable[..., Path]] = {family: _lazy(family) for family in FAMILIES}
