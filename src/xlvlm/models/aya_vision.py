"""Aya Vision (CohereLabs/aya-vision-8b): SigLIP tiles, pixel shuffle, a Cohere2 decoder. Its
processor pads on the left by default and its template starts with ``<BOS_TOKEN>``; the base
adapter asks for the padding side it needs, reads positions from the attention mask, and lets
the processor's chat-template path keep BOS single."""

from xlvlm.models.base import VLM
from xlvlm.models.registry import register


@register("aya_vision", name="Aya Vision", examples=("CohereLabs/aya-vision-8b",))
class AyaVisionVLM(VLM):
    def image_grid(self, batch, index: int):
        return None  # tiles plus a global view: no single grid
