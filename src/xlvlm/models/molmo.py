"""Molmo v1 (allenai/Molmo-7B-D-0924): remote code, no class in transformers.

What differs from the other families, and why the adapter does it itself:

* Loading. The hub code (``trust_remote_code=True``) does not load on transformers 5.x: its
  ``MolmoForCausalLM.__init__`` never calls ``post_init()``, so ``from_pretrained`` finds no
  ``all_tied_weights_keys``, and its ``tie_weights()`` takes no ``missing_keys``. The adapter
  loads a subclass of the remote class that supplies both (Molmo ties no weights through
  transformers: with ``weight_tying`` its logits read ``wte`` directly). The remote class itself is
  left untouched.
* Structure. Blocks are ``model.model.transformer.blocks`` and return ``(x, cache)`` tuples (the
  hooks take ``x``); the final norm is ``transformer.ln_f``; image features are added to the
  embeddings of the ``<im_patch>`` tokens, which are the image tokens.
* Inputs. No chat template: ``processor.process(text=prompt, images=[image])`` formats the prompt
  (" User: {prompt} Assistant:"), puts the image tokens first and returns one sample's tensors
  without a batch dimension. The adapter batches them: token rows padded (left or right) with an
  attention mask, ``image_input_idx`` shifted by the left padding, and crops padded to the batch's
  largest crop count with -1 (``image_input_idx`` -1: the padded crops' features go nowhere).
  For teacher forcing the answer's tokens and EOS follow the prompt's tokens, as Molmo's own
  training sequences do.
* Image preprocessing. The hub code resizes with TensorFlow. Without TensorFlow installed, the
  adapter swaps that one function (``resize_and_pad`` of the remote image-processing module) for a
  torch version while it calls ``process``: same geometry (fit, keep aspect ratio, centre-pad,
  mask, CLIP normalisation), bilinear with antialiasing, so pixels differ from TensorFlow's by
  interpolation rounding only.
* Generation. The hub's ``generate_from_batch`` relies on ``GenerationMixin`` internals that
  transformers 5.x removed or renamed (the class does not even inherit ``generate``), so the
  adapter decodes greedily itself on the model's forward: a prefill over the left-padded batch,
  then one call per token with Molmo's key/value cache (a list of ``(k, v)`` per block), explicit
  position ids and a growing attention mask. Hooks therefore see what they see for every other
  family: the prompt once, then one token per step.
"""

from __future__ import annotations

import importlib.util
import sys
from contextlib import contextmanager
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xlvlm.data.images import load_image
from xlvlm.errors import XlvlmError
from xlvlm.models.base import FAMILIES_EXTRA_HINT, REMOTE_CODE_HINT, VLM, Batch, _first_line, quiet_transformers
from xlvlm.models.registry import register

IMAGE_PATCH_TOKEN = "<im_patch>"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _loadable_subclass(remote_class: type) -> type:
    """A subclass of the remote model class that transformers 5.x can ``from_pretrained``:
    an (empty) ``all_tied_weights_keys``, which ``post_init()`` would have set, and a
    ``tie_weights`` that accepts the arguments 5.x passes."""

    def __init__(self, config, *args, **kwargs):
        remote_class.__init__(self, config, *args, **kwargs)
        if "all_tied_weights_keys" not in vars(self):
            self.all_tied_weights_keys = {}

    def tie_weights(self, *args, **kwargs):
        """Molmo ties nothing through transformers (see the module docstring)."""

    namespace = {"__module__": remote_class.__module__, "__qualname__": remote_class.__qualname__,
                 "__doc__": remote_class.__doc__, "__init__": __init__, "tie_weights": tie_weights}
    return type(remote_class.__name__, (remote_class,), namespace)


def resize_and_pad_torch(image: np.ndarray, desired_output_size, resize_method: str = "bilinear",
                         pad_value: float = 0.0, normalize: bool = True, image_mean=CLIP_MEAN, image_std=CLIP_STD):
    """Molmo's ``resize_and_pad`` without TensorFlow.

    image (H, W, 3) uint8 -> ((h, w, 3) float32, (h, w) bool): scaled to fit inside
    ``desired_output_size`` keeping the aspect ratio, centred on a ``pad_value`` canvas, the mask
    marking real pixels, CLIP-normalised when ``normalize``.
    """
    height, width = image.shape[:2]
    target_h, target_w = (int(v) for v in desired_output_size)
    scale = min(target_h / height, target_w / width)
    new_h, new_w = max(1, int(height * scale)), max(1, int(width * scale))
    pixels = torch.tensor(np.asarray(image), dtype=torch.float32).permute(2, 0, 1)[None] / 255.0
    mode = "bicubic" if resize_method == "bicubic" else "bilinear"
    pixels = F.interpolate(pixels, size=(new_h, new_w), mode=mode, antialias=True, align_corners=False)
    resized = pixels.clamp(0.0, 1.0)[0].permute(1, 2, 0).numpy()
    top, left = (target_h - new_h) // 2, (target_w - new_w) // 2
    padding = ((top, target_h - new_h - top), (left, target_w - new_w - left))
    out = np.pad(resized, padding + ((0, 0),), constant_values=pad_value)
    mask = np.pad(np.ones((new_h, new_w), dtype=bool), padding, constant_values=False)
    if normalize:
        out = (out - np.asarray(image_mean, np.float32)) / np.asarray(image_std, np.float32)
    return out.astype(np.float32), mask


@lru_cache(maxsize=1)
def _tensorflow_installed() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def _cache_of(output):
    """The key/value cache of a model output: ``cache`` on transformers 5.x (which renames the
    ``past_key_values`` the remote code sets, and warns on the old name), ``past_key_values`` before."""
    cache = output.get("cache") if hasattr(output, "get") else None
    return cache if cache is not None else output.past_key_values


@register("molmo", name="Molmo (v1, remote code)", examples=("allenai/Molmo-7B-D-0924",),
          auto_class=None, remote_code=True,
          not_checked="the hub's remote code itself (a stand-in of its interfaces is checked), TensorFlow's resize")
class MolmoVLM(VLM):
    family = "molmo"

    @classmethod
    def load(cls, name: str, config, device: torch.device, dtype, trust_remote_code: bool = False) -> "MolmoVLM":
        from transformers import AutoProcessor
        from transformers.dynamic_module_utils import get_class_from_dynamic_module

        if not trust_remote_code:  # the config step refuses first; this guards direct calls
            raise XlvlmError(f"cannot load model {name!r}: Molmo v1 runs code from its repository; {REMOTE_CODE_HINT}")
        class_ref = (getattr(config, "auto_map", None) or {}).get("AutoModelForCausalLM")
        if class_ref is None:
            raise XlvlmError(f"cannot load model {name!r}: a Molmo config names no AutoModelForCausalLM in auto_map")
        with quiet_transformers():
            try:
                model_class = _loadable_subclass(get_class_from_dynamic_module(class_ref, name))
                model = model_class.from_pretrained(name, config=config, dtype=dtype, use_safetensors=True)
                processor = AutoProcessor.from_pretrained(name, trust_remote_code=True)
            except ImportError as exc:  # the remote code imports einops, ...
                raise XlvlmError(f"cannot load model {name!r}: {_first_line(exc)}; {FAMILIES_EXTRA_HINT}")
            except (OSError, ValueError, KeyError) as exc:
                raise XlvlmError(f"cannot load model {name!r}: {_first_line(exc)}")
        model.to(device).eval()
        return cls(model, processor, name)

    # ---- structure -------------------------------------------------------------------------
    @property
    def _transformer(self) -> nn.ModuleDict:
        return self.model.model.transformer

    @property
    def decoder_layers(self) -> nn.ModuleList:
        return self._transformer.blocks

    @property
    def final_norm(self) -> nn.Module:
        return self._transformer.ln_f

    @property
    def image_token_id(self) -> int | None:
        token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_PATCH_TOKEN)
        return None if token_id is None or token_id == self.tokenizer.unk_token_id else int(token_id)

    def image_grid(self, batch, index: int):
        return None  # a low-resolution view plus overlapping crops: no single grid

    @property
    def eos_token_ids(self) -> set[int]:
        eos = getattr(self.model.config, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}

    @property
    def _pad_token_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad) if pad is not None else min(self.eos_token_ids)

    # ---- prompts ---------------------------------------------------------------------------
    def format_prompt(self, prompt: str, answer: str | None = None) -> tuple[str, str]:
        """The text the tokens spell: Molmo's " User: {prompt} Assistant:" (what ``process``
        builds), then " {answer}" and EOS for teacher forcing."""
        prompt_part = " User: " + prompt + " Assistant:"
        if answer is None:
            return prompt_part, prompt_part
        return prompt_part + " " + answer + (self.tokenizer.eos_token or ""), prompt_part

    @contextmanager
    def _torch_image_resize(self):
        """Swap the remote image preprocessing's TensorFlow resize for the torch one, if needed."""
        module = sys.modules.get(type(getattr(self.processor, "image_processor", None)).__module__)
        original = getattr(module, "resize_and_pad", None)
        if original is None or _tensorflow_installed():
            yield
            return
        module.resize_and_pad = resize_and_pad_torch
        try:
            yield
        finally:
            module.resize_and_pad = original

    def _process(self, prompt: str, image) -> dict[str, torch.Tensor]:
        with self._torch_image_resize():
            return dict(self.processor.process(text=prompt, images=[image]))

    # ---- batching --------------------------------------------------------------------------
    def encode(self, samples: Sequence[dict], answers: Sequence[str | None] | None = None,
               padding_side: str = "right") -> Batch:
        answers = list(answers) if answers is not None else [None] * len(samples)
        eos = self.tokenizer.eos_token_id
        rows, texts, prompt_lengths = [], [], []
        for sample, answer in zip(samples, answers):
            row = self._process(sample["prompt"], load_image(sample["image"]))
            prompt_lengths.append(int(row["input_ids"].shape[0]))
            if answer is not None:
                answer_ids = self.tokenizer.encode(" " + answer, add_special_tokens=False) + [eos]
                row["input_ids"] = torch.cat([row["input_ids"], torch.tensor(answer_ids, dtype=row["input_ids"].dtype)])
            rows.append(row)
            texts.append(self.format_prompt(sample["prompt"], answer)[0])
        inputs, offsets, lengths = self._collate(rows, padding_side)
        return Batch(inputs, offsets, lengths, prompt_lengths, texts, padding_side)

    def _collate(self, rows: list[dict[str, torch.Tensor]], padding_side: str):
        """Stack per-sample ``process`` outputs: tokens padded to the longest row (pad id, mask 0),
        crops padded with -1 to the largest crop count."""
        lengths = [int(row["input_ids"].shape[0]) for row in rows]
        width = max(lengths)
        offsets = [width - n if padding_side == "left" else 0 for n in lengths]
        ids = torch.full((len(rows), width), self._pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, (row, n, offset) in enumerate(zip(rows, lengths, offsets)):
            ids[b, offset:offset + n] = row["input_ids"]
            mask[b, offset:offset + n] = 1
        inputs = {"input_ids": ids, "attention_mask": mask}
        if "images" in rows[0]:
            crops = max(int(row["images"].shape[0]) for row in rows)

            def stack(key: str, shift: bool = False) -> torch.Tensor:
                first = rows[0][key]
                out = torch.full((len(rows), crops, *first.shape[1:]), -1, dtype=first.dtype)
                for b, row in enumerate(rows):
                    value = row[key]
                    if shift:  # image positions move with the left padding
                        value = torch.where(value >= 0, value + offsets[b], value)
                    out[b, :value.shape[0]] = value
                return out

            inputs["images"] = stack("images").to(self.dtype)
            inputs["image_input_idx"] = stack("image_input_idx", shift=True)
            if "image_masks" in rows[0]:
                inputs["image_masks"] = stack("image_masks").to(self.dtype)
        inputs = {key: value.to(self.device) for key, value in inputs.items()}
        return inputs, offsets, lengths

    # ---- running ---------------------------------------------------------------------------
    def _generate_ids(self, batch: Batch, max_new_tokens: int, step_logits: list | None = None) -> torch.Tensor:
        """Greedy decoding with Molmo's key/value cache: (B, T) prompt -> (B, T + N); each step's
        logits (B, V) appended to ``step_logits`` when given."""
        inputs = dict(batch.inputs)
        mask = inputs.pop("attention_mask")
        position_ids = (mask.cumsum(dim=-1) - 1).clamp(min=0)
        sequences = inputs["input_ids"]
        finished = torch.zeros(len(batch), dtype=torch.bool, device=sequences.device)
        eos = torch.tensor(sorted(self.eos_token_ids), device=sequences.device)
        out = self.model(**inputs, attention_mask=mask, position_ids=position_ids, use_cache=True)
        for step in range(max_new_tokens):
            if step_logits is not None:
                step_logits.append(out.logits[:, -1])
            next_ids = out.logits[:, -1].argmax(dim=-1)
            next_ids = torch.where(finished, torch.full_like(next_ids, self._pad_token_id), next_ids)
            sequences = torch.cat([sequences, next_ids[:, None]], dim=1)
            finished |= torch.isin(next_ids, eos)
            if step == max_new_tokens - 1 or bool(finished.all()):
                break
            mask = torch.cat([mask, mask.new_ones((len(batch), 1))], dim=1)
            position_ids = position_ids[:, -1:] + 1
            out = self.model(input_ids=next_ids[:, None], attention_mask=mask, position_ids=position_ids,
                             past_key_values=_cache_of(out), use_cache=True)
        return sequences
