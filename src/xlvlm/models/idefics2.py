"""Idefics2 (HuggingFaceM4/idefics2-8b): a Mistral decoder under ``model.model.text_model``.

``get_decoder()`` reaches the Mistral model, so layers and final norm come from the base class.
Images go to the processor as one list per sample (transformers' chat-template path does so).
The image tokens are the perceiver's latents (``image_seq_len`` of them per image): learned
queries, not patches, so they form no spatial grid and patch heatmaps are refused.
"""

from xlvlm.models.base import VLM
from xlvlm.models.registry import register


@register("idefics2", name="Idefics2", examples=("HuggingFaceM4/idefics2-8b",))
class Idefics2VLM(VLM):
    def image_grid(self, batch, index: int):
        return None  # perceiver latents, not patches
