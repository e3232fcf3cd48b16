"""LLaVA-1.5 (llava-hf) and Pixtral (``model_type`` "llava" with a Pixtral vision tower).

The base adapter fits: the processor expands ``<image>`` into one token per patch feature and
transformers' chat-template path decides BOS (Pixtral's template starts with ``<s>``, so the
tokenizer must not add a second one; the base adapter lets the processor decide, as
``apply_chat_template(tokenize=True)`` does).
"""

from xlvlm.models.base import VLM, grid_from_image_sizes
from xlvlm.models.registry import register


@register("llava", name="LLaVA-1.5 (and Pixtral-12B)",
          examples=("llava-hf/llava-1.5-7b-hf", "mistral-community/pixtral-12b"),
          not_checked="Pixtral-12B's tower with this class (its tower and processor: through Mistral 3)")
class LlavaVLM(VLM):
    def image_grid(self, batch, index: int):
        """LLaVA-1.5: a square grid (after an optional class token); Pixtral: rows of ``[IMG]``."""
        if "image_sizes" in batch.inputs and hasattr(self.processor, "spatial_merge_size"):
            processor = self.processor
            return grid_from_image_sizes(batch, index, processor.patch_size * processor.spatial_merge_size)
        return super().image_grid(batch, index)
