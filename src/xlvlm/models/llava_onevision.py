"""LLaVA-OneVision: a SigLIP tower with any-resolution tiling and a Qwen2 decoder. The base
adapter fits (the processor expands ``<image>`` per image size)."""

from xlvlm.models.base import VLM
from xlvlm.models.registry import register


@register("llava_onevision", name="LLaVA-OneVision", examples=("llava-hf/llava-onevision-qwen2-7b-ov-hf",))
class LlavaOnevisionVLM(VLM):
    def image_grid(self, batch, index: int):
        return None  # a base image plus tiles, with a newline token per row: no single grid
