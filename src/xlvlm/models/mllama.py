"""Llama 3.2 Vision (Mllama): image features enter through cross-attention layers interleaved
with the self-attention blocks (``get_decoder().layers`` holds both kinds, in order), not at the
``<|image|>`` token, which is a single placeholder. Layer i is block i's output, whatever its
kind. The base adapter fits; patch heatmaps have no image-token grid to draw on."""

from xlvlm.models.base import VLM
from xlvlm.models.registry import register


@register("mllama", name="Llama 3.2 Vision (Mllama)", examples=("meta-llama/Llama-3.2-11B-Vision-Instruct",))
class MllamaVLM(VLM):
    def image_grid(self, batch, index: int):
        return None  # one placeholder token; the image is read by cross-attention
