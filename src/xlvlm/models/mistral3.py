"""Mistral 3 (Mistral-Small-3.1): a Pixtral vision tower, a patch merger, a Mistral decoder;
``[IMG]`` tokens per patch row with ``[IMG_BREAK]``/``[IMG_END]`` layout tokens. The chat template
starts with ``<s>``; the base adapter lets the processor keep BOS single."""

from xlvlm.models.base import VLM, grid_from_image_sizes
from xlvlm.models.registry import register


@register("mistral3", name="Mistral 3", examples=("mistralai/Mistral-Small-3.1-24B-Instruct-2503",))
class Mistral3VLM(VLM):
    def image_grid(self, batch, index: int):
        """Rows of ``[IMG]`` tokens (each row ends with an ``[IMG_BREAK]``, not an image token)."""
        processor = self.processor
        return grid_from_image_sizes(batch, index, processor.patch_size * processor.spatial_merge_size)
