"""Idefics3 (HuggingFaceM4/Idefics3-8B-Llama3): a Llama 3 decoder under ``model.model.text_model``;
images are split into tiles plus a global view, each a block of ``<image>`` tokens after a
pixel shuffle. Its chat template starts with ``<|begin_of_text|>``, so the tokenizer must not
add BOS again (the processor's chat-template path takes care of it). The base adapter fits."""

from xlvlm.models.base import VLM
from xlvlm.models.registry import register


@register("idefics3", name="Idefics3", examples=("HuggingFaceM4/Idefics3-8B-Llama3",))
class Idefics3VLM(VLM):
    def image_grid(self, batch, index: int):
        return None  # several tiles and a global view, each a pixel-shuffled block: no single grid
