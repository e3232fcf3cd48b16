"""SmolVLM (HuggingFaceTB/SmolVLM-Instruct): the Idefics3 architecture with its own processor,
which spells numbers with ``num2words`` (a dependency of xlvlm) and reads images as one list per
sample (a flat list is one prompt with many images). The base adapter fits."""

from xlvlm.models.base import VLM
from xlvlm.models.registry import register


@register("smolvlm", name="SmolVLM", examples=("HuggingFaceTB/SmolVLM-Instruct",))
class SmolVLMVLM(VLM):
    def image_grid(self, batch, index: int):
        return None  # tiles plus a global view, as Idefics3
