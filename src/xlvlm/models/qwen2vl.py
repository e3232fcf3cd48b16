"""Qwen2-VL and Qwen2.5-VL: multimodal rotary positions (M-RoPE) computed from the inputs.

The base adapter fits them. In transformers 5.x the model computes its 3-D rotary positions
from ``mm_token_type_ids`` (and refuses image inputs without them); the Qwen processors return
them by default, ``encode`` passes them through with the other inputs, and ``extend_inputs``
marks appended tokens as text (0). The model caches its rope deltas between calls but
recomputes them at every prefill, so a teacher-forced pass after a generation sees fresh
positions. With left padding, batched passes match single-sample ones (tests check 1e-5).
"""

from __future__ import annotations

from xlvlm.models.base import VLM, grid_from_thw
from xlvlm.models.registry import register


@register("qwen2_5_vl", name="Qwen2.5-VL", examples=("Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2.5-VL-3B-Instruct"))
@register("qwen2_vl", name="Qwen2-VL", examples=("Qwen/Qwen2-VL-7B-Instruct", "Qwen/Qwen2-VL-2B-Instruct"))
class Qwen2VLM(VLM):
    def image_grid(self, batch, index: int):
        """The merged patch grid of the sample's image (``image_grid_thw``)."""
        return grid_from_thw(batch, index, self.model.config.vision_config.spatial_merge_size)
