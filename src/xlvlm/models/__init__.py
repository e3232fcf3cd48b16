"""``load_vlm``: one loading path for hub ids and local folders, one adapter per family."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from xlvlm.errors import XlvlmError
from xlvlm.models.base import VLM, Batch, Generation

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def _adapter_for(model_type: str):
    """The adapter class for a config's ``model_type`` (imports lazily: families are optional)."""
    if model_type in ("llava", "llava_next"):
        from xlvlm.models.llava import LlavaVLM
        return LlavaVLM
    if model_type == "idefics2":
        from xlvlm.models.idefics2 import Idefics2VLM
        return Idefics2VLM
    if model_type in ("qwen2_vl", "qwen2_5_vl"):
        from xlvlm.models.qwen2vl import Qwen2VLM
        return Qwen2VLM
    if model_type == "molmo2":
        from xlvlm.models.molmo2 import Molmo2VLM
        return Molmo2VLM
    if model_type == "molmo":
        from xlvlm.models.molmo import MolmoVLM
        return MolmoVLM
    return VLM


def _resolve_dtype(dtype):
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if dtype not in DTYPES:
        raise XlvlmError(f"unknown dtype {dtype!r}: use one of {sorted(DTYPES)} or 'auto'")
    return DTYPES[dtype]


def _load_config(name_or_path: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name_or_path, trust_remote_code=True)
    except (OSError, ValueError) as exc:
        where = "folder" if Path(name_or_path).exists() else "hub id"
        hint = ("it is not a model folder and the hub is offline (HF_HUB_OFFLINE=1) or unreachable"
                if where == "hub id" else "it holds no readable config.json")
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise XlvlmError(f"cannot load model {name_or_path!r}: {hint} ({first})")


def load_vlm(name_or_path: str | os.PathLike, device: str | torch.device = "cpu", dtype=None) -> VLM:
    """Load a VLM from a hub id or a local folder and wrap it in its family's adapter.

    ``organism:original``, ``organism:finetuned`` and ``organism:hallucinating`` name the shipped
    model organism's folders.
    device: "cpu", "cuda", "cuda:1", ...; dtype: None (as saved, float32 on CPU), "float16",
    "bfloat16", "float32", "auto" or a torch dtype.
    """
    name = str(name_or_path)
    if name.startswith("organism:"):
        from xlvlm import organism

        name = str(organism.path(name.split(":", 1)[1]))
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise XlvlmError("--device cuda asked for, but torch sees no GPU; use --device cpu")
    config = _load_config(name)
    adapter = _adapter_for(getattr(config, "model_type", ""))
    torch_dtype = _resolve_dtype(dtype)
    if torch_dtype is None:
        torch_dtype = torch.float32 if device.type == "cpu" else "auto"
    return adapter.load(name, config=config, device=device, dtype=torch_dtype)


__all__ = ["load_vlm", "VLM", "Batch", "Generation"]
