"""Gemma 3 (google/gemma-3-4b-it, -12b-it, ...): a SigLIP tower pooled to ``mm_tokens_per_image``
soft tokens per image (a square grid), bidirectional attention among one image's tokens
(``token_type_ids`` mark them), and a chat template that starts with ``<bos>``. The base
adapter fits: the processor's chat-template path keeps BOS single and takes one image list per
sample (a flat list would be read as one prompt with many images)."""

from xlvlm.models.base import VLM
from xlvlm.models.registry import register


@register("gemma3", name="Gemma 3", examples=("google/gemma-3-4b-it", "google/gemma-3-12b-it"))
class Gemma3VLM(VLM):
    pass
