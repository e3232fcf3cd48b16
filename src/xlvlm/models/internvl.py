"""InternVL (transformers-native, e.g. OpenGVLab/InternVL3_5-8B-HF): tiles of an InternViT, pixel
shuffle, a Qwen-style decoder. Its processor pads on the left by default; the base adapter asks
for the side it needs and reads every sample's position from the attention mask."""

from xlvlm.models.base import VLM
from xlvlm.models.registry import register


@register("internvl", name="InternVL", examples=("OpenGVLab/InternVL3_5-8B-HF", "OpenGVLab/InternVL3-2B-hf"))
class InternVLVLM(VLM):
    def image_grid(self, batch, index: int):
        return None  # tiles plus a thumbnail, each a pixel-shuffled block: no single grid
