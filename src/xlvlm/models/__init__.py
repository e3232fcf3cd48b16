"""``load_vlm``: one loading path for hub ids and local folders, one adapter per family."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from xlvlm.errors import XlvlmError, setting
from xlvlm.models.base import REMOTE_CODE_HINT, VLM, Batch, Generation
from xlvlm.models.registry import families, family_of, register, register_alias, resolve_alias

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def _adapter_for(model_type: str):
    """The adapter class for a config's ``model_type``: the registered family's, else the base
    adapter (any other model ``AutoModelForImageTextToText`` maps)."""
    family = family_of(model_type)
    return family.adapter if family is not None else VLM


def _check_supported(name: str, config) -> None:
    """A one-line error for a model no adapter serves and ``AutoModelForImageTextToText`` does
    not map (e.g. Phi-4-multimodal, text-only models)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    model_type = getattr(config, "model_type", "")
    if family_of(model_type) is not None or model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return
    supported = ", ".join(sorted(families()))
    raise XlvlmError(f"cannot load model {name!r}: model_type {model_type!r} is not an image-text-to-text model "
                     f"transformers' AutoModelForImageTextToText loads; supported families: {supported} "
                     f"(docs/models.md)")


def _resolve_dtype(dtype):
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if dtype not in DTYPES:
        raise XlvlmError(f"unknown dtype {dtype!r}: use one of {sorted(DTYPES)} or 'auto'")
    return DTYPES[dtype]


def _load_config(name_or_path: str, trust_remote_code: bool = False):
    from transformers import AutoConfig

    _refuse_remote_code_without_consent(name_or_path, trust_remote_code)
    try:
        return AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        if "trust_remote_code" in str(exc):
            raise XlvlmError(f"cannot load model {name_or_path!r}: it runs code from its repository; {REMOTE_CODE_HINT}")
        where = "folder" if Path(name_or_path).exists() else "hub id"
        hint = ("it is not a model folder and the hub is offline (HF_HUB_OFFLINE=1) or unreachable"
                if where == "hub id" else "it holds no readable config.json")
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise XlvlmError(f"cannot load model {name_or_path!r}: {hint} ({first})")


def _refuse_remote_code_without_consent(name_or_path: str, trust_remote_code: bool) -> None:
    """A local folder whose config names code (``auto_map``) loads only with consent, even where
    transformers would fall back to a native class: the folder's author meant that code to run."""
    config_file = Path(name_or_path) / "config.json"
    if trust_remote_code or not config_file.is_file():
        return
    try:
        raw = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise XlvlmError(f"{config_file}: not readable JSON ({exc})")
    if isinstance(raw, dict) and raw.get("auto_map"):
        raise XlvlmError(f"{config_file}: auto_map names code shipped with the model; {REMOTE_CODE_HINT}")


def _refuse_pickled_weights(name_or_path: str) -> None:
    """Weights load from safetensors only: a pickle can run code when read."""
    folder = Path(name_or_path)
    if not folder.is_dir():
        return
    safe = any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json"))
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl"))
    if pickled and not safe:
        raise XlvlmError(f"{folder}: weights only in pickle files ({', '.join(pickled[:3])}); xlvlm never unpickles: "
                         f"convert them to safetensors (model.save_pretrained(folder) with safe_serialization)")


def load_vlm(name_or_path: str | os.PathLike, device: str | torch.device = "cpu", dtype=None,
             trust_remote_code: bool = False) -> VLM:
    """Load a VLM from a hub id or a local folder and wrap it in its family's adapter.

    ``organism:original``, ``organism:finetuned`` and ``organism:hallucinating`` name the shipped
    model organism's folders (aliases: :func:`xlvlm.models.registry.register_alias`).
    device: "cpu", "cuda", "cuda:1", ...; dtype: None (as saved, float32 on CPU), "float16",
    "bfloat16", "float32", "auto" or a torch dtype. trust_remote_code: run code shipped with the
    model (``auto_map``, e.g. Molmo v1); refused unless True. Weights load from safetensors only.
    """
    name = resolve_alias(str(name_or_path))
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise XlvlmError(f"{setting('device', str(device))} asked for, but torch sees no GPU; use {setting('device', 'cpu')}")
    _refuse_pickled_weights(name)
    config = _load_config(name, trust_remote_code)
    _check_supported(name, config)
    adapter = _adapter_for(getattr(config, "model_type", ""))
    torch_dtype = _resolve_dtype(dtype)
    if torch_dtype is None:
        torch_dtype = torch.float32 if device.type == "cpu" else "auto"
    return adapter.load(name, config=config, device=device, dtype=torch_dtype, trust_remote_code=trust_remote_code)


__all__ = ["load_vlm", "VLM", "Batch", "Generation", "families", "register", "register_alias"]
