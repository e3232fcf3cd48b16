"""Llama 3.2 Vision (Mllama): image features enter through cross-attention layers interleaved
with the self-attention blocks (``get_decoder().layers`` holds both kinds, in order), not at the
``<|image|>`` token, which is a single placeholder. Layer i is block i's output, whatever its
kind. Patch heatmaps have no image-token grid to draw on. Re-reading a generation extends
``cross_attention_mask`` as transformers' generation does."""

import torch

from xlvlm.models.base import VLM
from xlvlm.models.registry import register


@register("mllama", name="Llama 3.2 Vision (Mllama)", examples=("meta-llama/Llama-3.2-11B-Vision-Instruct",))
class MllamaVLM(VLM):
    def image_grid(self, batch, index: int):
        return None  # one placeholder token; the image is read by cross-attention

    def extend_inputs(self, batch, new_ids):
        """As the base, and each appended token sees the images the last prompt token sees
        (``cross_attention_mask`` (B, T, images, tiles) grows by repeating its last position, as
        transformers' generation does)."""
        inputs = super().extend_inputs(batch, new_ids)
        mask = batch.inputs.get("cross_attention_mask")
        if mask is not None:
            last = mask[:, -1:].expand(-1, new_ids.shape[1], *mask.shape[2:])
            inputs["cross_attention_mask"] = torch.cat([mask, last], dim=1)
        return inputs
