"""LLaVA-1.5 (llava-hf) and LLaVA-NeXT: the base adapter already fits them."""

from xlvlm.models.base import VLM


class LlavaVLM(VLM):
    family = "llava"
