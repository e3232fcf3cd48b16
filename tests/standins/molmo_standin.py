"""A small stand-in for the remote code of allenai/Molmo-7B-D-0924 (Molmo v1), for tests only.

Molmo v1 has no class in transformers: the hub repository ships its own Python files, loaded
with ``trust_remote_code=True``, and they cannot be downloaded or committed here. This module
reproduces the parts of that code an adapter depends on, written from its documented behaviour:

* config ``model_type = "molmo"``, ``MolmoForCausalLM`` with the language model under
  ``model.transformer``: ``wte`` (base + additional vocabulary, the image tokens live in the
  additional part), ``blocks`` (each returning an ``(x, cache)`` tuple, ``cache`` a ``(k, v)``
  pair or None), ``ln_f`` and ``ff_out``; a vision backbone whose pooled crop features are
  *added* to the embeddings at ``image_input_idx``;
* ``forward(input_ids, attention_mask, images, image_masks, image_input_idx, position_ids,
  past_key_values, use_cache, last_logits_only, output_hidden_states, append_last_valid_logits)``
  with Molmo's conventions: ``-1`` marks padding in ``input_ids`` when no mask is given,
  position ids are the running count of real tokens, key/value caches are lists of tuples,
  ``output_hidden_states`` follows HF's convention (the last entry is ``ln_f``'s output);
* ``MolmoProcessor.process(text=..., images=[...])``: one sample, tensors without a batch
  dimension, the prompt in Molmo's " User: ... Assistant:" format, image tokens first, BOS
  (the EOS token when there is no BOS) prepended;
* ``generate_from_batch(batch, generation_config)`` (asserts ``use_cache``; pads with -1 on the
  right and continues from the last real token).

It also keeps the four defects that stop the real code on transformers 5.x, so the adapter's
fixes are exercised: ``__init__`` never calls ``post_init()`` (no ``all_tied_weights_keys``),
``tie_weights()`` takes no arguments, the class does not inherit ``GenerationMixin`` (so
``generate_from_batch`` fails), and the image resize imports TensorFlow.

The builder (:func:`tests.standins.build_tiny_molmo`) copies this file next to
``config.json`` and names it in ``auto_map``, so the folder loads only with
``trust_remote_code=True``, as the real checkpoint does. Keep the file self-contained: it runs
as ``transformers_modules.<folder>.molmo_standin``, without access to ``xlvlm``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel, ProcessorMixin
from transformers.image_processing_utils import BaseImageProcessor
from transformers.modeling_outputs import CausalLMOutputWithPast

IMAGE_PATCH = "<im_patch>"
IMAGE_COL = "<im_col>"
IMAGE_START = "<im_start>"
IMAGE_END = "<im_end>"
IMAGE_PROMPT = "<|image|>"
IMAGE_TOKENS = (IMAGE_START, IMAGE_END, IMAGE_PATCH, IMAGE_COL, IMAGE_PROMPT)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class MolmoConfig(PretrainedConfig):
    model_type = "molmo"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(self, vocab_size: int = 64, embedding_size: int = 64, additional_vocab_size: int = 8,
                 hidden_size: int = 48, intermediate_size: int = 96, num_hidden_layers: int = 4,
                 num_attention_heads: int = 4, num_key_value_heads: int = 2, max_position_embeddings: int = 512,
                 rope_theta: float = 10000.0, layer_norm_eps: float = 1e-6, use_position_ids: bool = True,
                 weight_tying: bool = False, image_size: int = 16, image_patch_size: int = 4,
                 image_emb_dim: int = 32, image_pooling: int = 2, initializer_range: float = 0.02,
                 use_cache: bool = True, tie_word_embeddings: bool = False, **kwargs):
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.additional_vocab_size = additional_vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.max_position_embeddings = max_position_embeddings
        self.rope_theta = rope_theta
        self.layer_norm_eps = layer_norm_eps
        self.use_position_ids = use_position_ids
        self.weight_tying = weight_tying
        self.image_size = image_size
        self.image_patch_size = image_patch_size
        self.image_emb_dim = image_emb_dim
        self.image_pooling = image_pooling
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)


# ---- model ---------------------------------------------------------------------------------

class RMSLayerNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class Embedding(nn.Module):
    """Base vocabulary plus ``additional_vocab_size`` new rows (Molmo's image tokens)."""

    def __init__(self, num_embeddings: int, num_new_embeddings: int, dim: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(num_embeddings, dim) * 0.5)
        self.new_embedding = nn.Parameter(torch.randn(num_new_embeddings, dim) * 0.5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, torch.cat([self.embedding, self.new_embedding], dim=0))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


class MolmoBlock(nn.Module):
    """Pre-norm decoder block; returns ``(x, cache)`` like the hub code's blocks."""

    def __init__(self, config: MolmoConfig):
        super().__init__()
        d = config.hidden_size
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = config.num_key_value_heads
        self.head_dim = d // self.n_heads
        self.att_norm = RMSLayerNorm(d, config.layer_norm_eps)
        self.att_proj = nn.Linear(d, (self.n_heads + 2 * self.n_kv_heads) * self.head_dim, bias=True)
        self.attn_out = nn.Linear(self.n_heads * self.head_dim, d, bias=False)
        self.ff_norm = RMSLayerNorm(d, config.layer_norm_eps)
        self.ff_proj = nn.Linear(d, 2 * config.intermediate_size, bias=False)
        self.ff_out = nn.Linear(config.intermediate_size, d, bias=False)
        self.rope_theta = config.rope_theta

    def _rotary(self, x: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        # Computed per call, never a buffer: a non-persistent buffer is not in the checkpoint, and
        # transformers 5.x's from_pretrained leaves such buffers uninitialised for remote classes.
        exponents = torch.arange(0, self.head_dim, 2, device=x.device).float() / self.head_dim
        inv_freq = 1.0 / (self.rope_theta ** exponents)
        angles = position_ids.float()[:, None, :, None] * inv_freq[None, None, None, :]
        angles = torch.cat([angles, angles], dim=-1)
        return (x.float() * angles.cos() + _rotate_half(x.float()) * angles.sin()).to(x.dtype)

    def forward(self, x, attention_bias=None, position_ids=None, layer_past=None, use_cache=False):
        batch, length, _ = x.shape
        qkv = self.att_proj(self.att_norm(x))
        q, k, v = qkv.split([self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim,
                             self.n_kv_heads * self.head_dim], dim=-1)
        q = q.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(batch, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = self._rotary(q, position_ids), self._rotary(k, position_ids)
        if layer_past is not None:
            k = torch.cat([layer_past[0], k], dim=-2)
            v = torch.cat([layer_past[1], v], dim=-2)
        cache = (k, v) if use_cache else None
        repeat = self.n_heads // self.n_kv_heads
        keys, values = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        n_keys = keys.shape[-2]
        bias = attention_bias[:, :, n_keys - length:n_keys, :n_keys].to(q.dtype)
        attended = F.scaled_dot_product_attention(q, keys, values, attn_mask=bias)
        x = x + self.attn_out(attended.transpose(1, 2).reshape(batch, length, -1))
        hidden, gate = self.ff_proj(self.ff_norm(x)).chunk(2, dim=-1)
        x = x + self.ff_out(F.silu(gate) * hidden)
        return x, cache


class VisionBackbone(nn.Module):
    """Crops of patches -> one feature per 2x2 pooled patch group, projected to the LM width."""

    def __init__(self, config: MolmoConfig):
        super().__init__()
        patch_dim = config.image_patch_size ** 2 * 3
        side = config.image_size // config.image_patch_size
        self.side = side
        self.pooling = config.image_pooling
        width = config.image_emb_dim
        self.patch_embedding = nn.Linear(patch_dim, width)
        self.positional_embedding = nn.Parameter(torch.randn(side * side, width) * 0.1)
        self.pad_embed = nn.Parameter(torch.randn(width) * 0.1)
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.projector = nn.Linear(width, config.hidden_size)

    def forward(self, images: torch.Tensor, image_masks: torch.Tensor | None) -> torch.Tensor:
        """images (B, C, P, patch_dim), image_masks (B, C, P) -> features (B, C, P / pooling^2, D)."""
        x = self.patch_embedding(images) + self.positional_embedding
        if image_masks is not None:  # partial padding: patches of the pad border get the pad embedding
            x = x + self.pad_embed * (1.0 - image_masks.clamp(min=0)).unsqueeze(-1).to(x.dtype)
        x = x + self.mlp(self.norm(x))
        batch, crops, _, width = x.shape
        p, s = self.pooling, self.side
        x = x.view(batch, crops, s // p, p, s // p, p, width).mean(dim=(3, 5))
        return self.projector(x.reshape(batch, crops, -1, width))


class Molmo(nn.Module):
    def __init__(self, config: MolmoConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=Embedding(config.embedding_size, config.additional_vocab_size, config.hidden_size),
            ln_f=RMSLayerNorm(config.hidden_size, config.layer_norm_eps),
            blocks=nn.ModuleList([MolmoBlock(config) for _ in range(config.num_hidden_layers)]),
        ))
        if not config.weight_tying:
            self.transformer.update({"ff_out": nn.Linear(config.hidden_size, config.embedding_size, bias=False)})
        self.vision_backbone = VisionBackbone(config)

    def forward(self, input_ids, attention_mask=None, images=None, image_masks=None, image_input_idx=None,
                position_ids=None, past_key_values=None, use_cache=False, last_logits_only=False,
                output_hidden_states=False, append_last_valid_logits=None):
        batch, length = input_ids.shape
        past_length = 0 if past_key_values is None else past_key_values[0][0].shape[-2]
        if attention_mask is None:
            attention_mask = input_ids != -1
        if position_ids is None:
            position_ids = torch.clamp(torch.cumsum(attention_mask.to(torch.int32), dim=-1) - 1, min=0)
            position_ids = position_ids[:, past_length:past_length + length]
        input_ids = input_ids * (input_ids != -1).to(input_ids.dtype)
        x = self.transformer.wte(input_ids)
        if images is not None:
            assert past_key_values is None, "Cached key and values should not be used with images."
            features = self.vision_backbone(images, image_masks)
            features = features.reshape(batch, -1, features.shape[-1])
            index = image_input_idx.reshape(batch, -1)
            valid = index >= 0
            rows = torch.arange(batch, device=x.device)[:, None].expand_as(index)
            x = x.clone()
            x[rows[valid], index[valid]] += features[valid].to(x.dtype)

        # Additive bias: causal over absolute positions, minus padding keys.
        n_keys = past_length + length
        keys_mask = attention_mask[:, :n_keys].to(torch.bool)
        causal = torch.ones(n_keys, n_keys, dtype=torch.bool, device=x.device).tril()
        allowed = causal[None, None] & keys_mask[:, None, None, :]
        bias = torch.zeros(allowed.shape, dtype=torch.float32, device=x.device)
        bias = bias.masked_fill(~allowed, torch.finfo(torch.float32).min)

        hidden_states = []
        caches = [] if use_cache else None
        for i, block in enumerate(self.transformer.blocks):
            if output_hidden_states:
                hidden_states.append(x)
            layer_past = None if past_key_values is None else past_key_values[i]
            x, cache = block(x, attention_bias=bias, position_ids=position_ids, layer_past=layer_past,
                             use_cache=use_cache)
            if caches is not None:
                caches.append(cache)
        if last_logits_only:
            if append_last_valid_logits is not None:
                x = x[torch.arange(batch, device=x.device), append_last_valid_logits.to(x.device)].unsqueeze(1)
            else:
                x = x[:, -1:, :]
        x = self.transformer.ln_f(x)
        if output_hidden_states:
            hidden_states.append(x)
        if self.config.weight_tying:
            logits = F.linear(x, self.transformer.wte.embedding)
        else:
            logits = self.transformer.ff_out(x)
        return logits, caches, tuple(hidden_states) if output_hidden_states else None


class MolmoForCausalLM(PreTrainedModel):
    config_class = MolmoConfig
    base_model_prefix = "model"
    _no_split_modules = ["MolmoBlock"]

    def __init__(self, config: MolmoConfig):
        super().__init__(config)
        self.model = Molmo(config)  # like the hub code: no post_init()

    def forward(self, input_ids=None, attention_mask=None, images=None, image_masks=None, image_input_idx=None,
                position_ids=None, past_key_values=None, use_cache=None, last_logits_only=False,
                output_hidden_states=None, append_last_valid_logits=None, return_dict=None, **kwargs):
        use_cache = self.config.use_cache if use_cache is None else use_cache
        logits, caches, hidden_states = self.model(
            input_ids, attention_mask=attention_mask, images=images, image_masks=image_masks,
            image_input_idx=image_input_idx, position_ids=position_ids, past_key_values=past_key_values,
            use_cache=use_cache, last_logits_only=last_logits_only, output_hidden_states=bool(output_hidden_states),
            append_last_valid_logits=append_last_valid_logits)
        return CausalLMOutputWithPast(logits=logits, past_key_values=caches, hidden_states=hidden_states)

    @torch.no_grad()
    def generate_from_batch(self, batch, generation_config=None, **kwargs):
        """Batches are right padded with -1; generation continues after each sample's last real token."""
        if generation_config is not None:
            assert generation_config.use_cache
        input_ids = batch["input_ids"]
        batch_size = input_ids.shape[0]
        max_new_tokens = generation_config.max_new_tokens
        attention_mask = input_ids != -1
        position_ids = torch.clamp(torch.cumsum(attention_mask.to(torch.int32), dim=-1) - 1, min=0)
        append_last_valid_logits = attention_mask.long().sum(dim=-1) - 1
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((batch_size, max_new_tokens))], dim=1)
        # As in the hub code: GenerationMixin.generate, which this class does not inherit on transformers 5.x.
        return super().generate(input_ids, generation_config, attention_mask=attention_mask,
                                images=batch.get("images"), image_masks=batch.get("image_masks"),
                                image_input_idx=batch.get("image_input_idx"), position_ids=position_ids,
                                append_last_valid_logits=append_last_valid_logits, **kwargs)

    def get_input_embeddings(self):
        return self.model.transformer.wte

    def get_output_embeddings(self):
        return self.model.transformer.wte if self.config.weight_tying else self.model.transformer.ff_out

    def tie_weights(self):
        """A no-op, as in the hub code (logits use ``wte`` directly when weights are tied)."""


# ---- preprocessing -------------------------------------------------------------------------

def resize_and_pad(image: np.ndarray, desired_output_size, pad_value: float = 0.0, normalize: bool = True,
                   image_mean=CLIP_MEAN, image_std=CLIP_STD):
    """(H, W, 3) uint8 -> ((h, w, 3) float32, (h, w) bool mask): fit inside the size, keep the
    aspect ratio, pad evenly. As in the hub code, the resize goes through TensorFlow, so without it
    the import fails at the first image (the try keeps transformers' import check from refusing the
    whole file at load time)."""
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise ImportError("resize_and_pad needs tensorflow (pip install tensorflow)") from exc

    height, width = image.shape[:2]
    target_h, target_w = desired_output_size
    scale = min(target_h / height, target_w / width)
    new_h, new_w = max(1, int(height * scale)), max(1, int(width * scale))
    resized = tf.image.convert_image_dtype(tf.constant(image), dtype=tf.float32)
    resized = tf.image.resize(resized, [new_h, new_w], method=tf.image.ResizeMethod.BILINEAR, antialias=True)
    resized = tf.clip_by_value(resized, 0.0, 1.0).numpy()
    return _pad_and_normalize(resized, (target_h, target_w), pad_value, normalize, image_mean, image_std)


def _pad_and_normalize(resized: np.ndarray, size, pad_value, normalize, image_mean, image_std):
    new_h, new_w = resized.shape[:2]
    top, left = (size[0] - new_h) // 2, (size[1] - new_w) // 2
    padding = ((top, size[0] - new_h - top), (left, size[1] - new_w - left))
    image = np.pad(resized, padding + ((0, 0),), constant_values=pad_value)
    mask = np.pad(np.ones((new_h, new_w), dtype=bool), padding, constant_values=False)
    if normalize:
        image = (image - np.asarray(image_mean, np.float32)) / np.asarray(image_std, np.float32)
    return image.astype(np.float32), mask


class MolmoImageProcessor(BaseImageProcessor):
    """A global view of the image plus a 1x2 or 2x1 tiling (by aspect ratio) of square crops."""

    model_input_names = ["images", "image_input_idx", "image_masks"]

    def __init__(self, base_image_input_size=(16, 16), image_patch_size: int = 4, image_pooling: int = 2,
                 image_mean=None, image_std=None, **kwargs):
        super().__init__(**kwargs)
        self.base_image_input_size = list(base_image_input_size)
        self.image_patch_size = image_patch_size
        self.image_pooling = image_pooling
        self.image_mean = list(image_mean or CLIP_MEAN)
        self.image_std = list(image_std or CLIP_STD)

    def _patches(self, crop: np.ndarray, mask: np.ndarray):
        p = self.image_patch_size
        side = crop.shape[0] // p
        patches = crop.reshape(side, p, side, p, 3).transpose(0, 2, 1, 3, 4).reshape(side * side, p * p * 3)
        fraction = mask.reshape(side, p, side, p).transpose(0, 2, 1, 3).reshape(side * side, p * p).mean(-1)
        return patches, fraction.astype(np.float32)

    def _view_tokens(self, rows: int, cols: int, ids: dict) -> np.ndarray:
        """Tokens of a view of rows x cols pooled cells: <im_start> (patch * cols, <im_col>) * rows <im_end>."""
        row = [ids[IMAGE_PATCH]] * cols + [ids[IMAGE_COL]]
        return np.asarray([ids[IMAGE_START]] + row * rows + [ids[IMAGE_END]], dtype=np.int64)

    def preprocess(self, image: np.ndarray, ids: dict):
        """One image -> crops (C, P, patch_dim), masks (C, P), tokens (N,), image_input_idx (C, cells)."""
        size = self.base_image_input_size[0]
        cells = size // self.image_patch_size // self.image_pooling
        height, width = image.shape[:2]
        tiling = (1, 2) if width > height else (2, 1) if height > width else (1, 1)
        views = [resize_and_pad(image, [size, size], image_mean=self.image_mean, image_std=self.image_std)]
        tiled, tiled_mask = resize_and_pad(image, [tiling[0] * size, tiling[1] * size],
                                           image_mean=self.image_mean, image_std=self.image_std)
        for r in range(tiling[0]):
            for c in range(tiling[1]):
                window = (slice(r * size, (r + 1) * size), slice(c * size, (c + 1) * size))
                views.append((tiled[window], tiled_mask[window]))
        crops, masks = zip(*(self._patches(view, mask) for view, mask in views))
        global_tokens = self._view_tokens(cells, cells, ids)
        tiled_tokens = self._view_tokens(tiling[0] * cells, tiling[1] * cells, ids)
        tokens = np.concatenate([global_tokens, tiled_tokens])
        # Where each crop's pooled cells go: row-major patch positions of its view.
        global_positions = np.nonzero(global_tokens == ids[IMAGE_PATCH])[0].reshape(cells, cells)
        tiled_positions = len(global_tokens) + np.nonzero(tiled_tokens == ids[IMAGE_PATCH])[0].reshape(
            tiling[0] * cells, tiling[1] * cells)
        index = [global_positions.reshape(-1)]
        for r in range(tiling[0]):
            for c in range(tiling[1]):
                index.append(tiled_positions[r * cells:(r + 1) * cells, c * cells:(c + 1) * cells].reshape(-1))
        return np.stack(crops), np.stack(masks), tokens, np.stack(index)

    def multimodal_preprocess(self, images, tokens: np.ndarray, ids: dict) -> dict:
        """Images go before the text tokens, as in the hub code."""
        all_crops, all_masks, all_index, out_tokens = [], [], [], []
        for image in images:
            crops, masks, image_tokens, index = self.preprocess(image, ids)
            offset = sum(len(t) for t in out_tokens)
            all_crops.append(crops)
            all_masks.append(masks)
            all_index.append(index + offset)
            out_tokens.append(image_tokens)
        out_tokens.append(np.asarray(tokens, dtype=np.int64))
        return {"input_ids": np.concatenate(out_tokens), "images": np.concatenate(all_crops).astype(np.float32),
                "image_input_idx": np.concatenate(all_index).astype(np.int64),
                "image_masks": np.concatenate(all_masks).astype(np.float32)}


class MolmoProcessor(ProcessorMixin):
    attributes = ["image_processor", "tokenizer"]

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        super().__init__(image_processor, tokenizer, **kwargs)

    def process(self, text: str | None = None, images=None, message_format: str = "role",
                always_start_with_space: bool = True, **kwargs) -> dict[str, torch.Tensor]:
        """One sample: input_ids (N,), images (C, P, patch_dim), image_input_idx (C, cells),
        image_masks (C, P), as tensors without a batch dimension."""
        prompt = text or ""
        if message_format == "role":
            prompt = "User: " + prompt + " Assistant:"
        if always_start_with_space:
            prompt = " " + prompt
        tokens = self.tokenizer.encode(prompt, add_special_tokens=False)
        ids = {token: self.tokenizer.convert_tokens_to_ids(token) for token in IMAGE_TOKENS}
        if images is None:
            out = {"input_ids": np.asarray(tokens, dtype=np.int64)}
        else:
            images = images if isinstance(images, (list, tuple)) else [images]
            arrays = [np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)
                      for image in images]
            out = self.image_processor.multimodal_preprocess(arrays, np.asarray(tokens), ids)
        bos = self.tokenizer.bos_token_id
        bos = self.tokenizer.eos_token_id if bos is None else bos
        out["input_ids"] = np.concatenate([[bos], out["input_ids"]]).astype(np.int64)
        if "image_input_idx" in out:
            out["image_input_idx"] = np.where(out["image_input_idx"] < 0, out["image_input_idx"],
                                              out["image_input_idx"] + 1)
        return {key: torch.from_numpy(value) for key, value in out.items()}
