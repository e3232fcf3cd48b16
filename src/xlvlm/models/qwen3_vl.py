"""Qwen3-VL (Qwen/Qwen3-VL-8B-Instruct): as Qwen2.5-VL (M-RoPE from ``mm_token_type_ids``), plus
deepstack: right after decoder blocks 0, 1, 2 (one per ``deepstack_visual_indexes`` entry) the
model adds visual features of intermediate vision layers to the residual stream at the image
positions. So the output of block i is not what block i + 1 reads there, and HF's
``output_hidden_states`` (block outputs) misses the addition too.

Layer i (an integer) is therefore read and steered where block i + 1 reads it: the hidden states
block i + 1 is called with (the last block: its output, where nothing is added). The plain
output of block i, before the deepstack addition, stays available under its module name
(``model.language_model.layers.<i>``, which ``--layers`` accepts).
"""

from __future__ import annotations

from torch import nn

from xlvlm.models.base import VLM, grid_from_thw
from xlvlm.models.registry import register


@register("qwen3_vl", name="Qwen3-VL", examples=("Qwen/Qwen3-VL-8B-Instruct", "Qwen/Qwen3-VL-4B-Instruct"))
class Qwen3VLM(VLM):
    def residual_site(self, index: int) -> tuple[nn.Module, str]:
        layers = self.decoder_layers
        if index + 1 < len(layers):
            return layers[index + 1], "input"
        return layers[index], "output"

    def block_output_name(self, index: int) -> str:
        """The module name that ``--layers`` takes for block ``index``'s plain output."""
        layer = self.decoder_layers[index]
        return next(name for name, module in self.model.named_modules() if module is layer)

    def image_grid(self, batch, index: int):
        """The merged patch grid of the sample's image (``image_grid_thw``)."""
        return grid_from_thw(batch, index, self.model.config.vision_config.spatial_merge_size)
