"""LLaVA-NeXT (LLaVA-1.6): any-resolution tiling; the processor counts the image tokens of each
image from its size, so samples of different image sizes have different prompt lengths. The
base adapter fits."""

from xlvlm.models.base import VLM
from xlvlm.models.registry import register


@register("llava_next", name="LLaVA-NeXT", examples=("llava-hf/llava-v1.6-mistral-7b-hf",))
class LlavaNextVLM(VLM):
    def image_grid(self, batch, index: int):
        return None  # a base image plus tiles, with a newline token per row: no single grid
