"""GLM-4.1V (zai-org/GLM-4.1V-9B-Thinking): a ViT with 2x2 merging and 3-D rotary positions
computed from ``mm_token_type_ids`` (like Qwen2-VL), a GLM-4 decoder. The base adapter fits."""

from xlvlm.models.base import VLM, grid_from_thw
from xlvlm.models.registry import register


@register("glm4v", name="GLM-4.1V", examples=("zai-org/GLM-4.1V-9B-Thinking",))
class Glm4vVLM(VLM):
    def image_grid(self, batch, index: int):
        """The merged patch grid of the sample's image (``image_grid_thw``)."""
        return grid_from_thw(batch, index, self.model.config.vision_config.spatial_merge_size)
