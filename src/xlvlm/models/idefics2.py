"""Idefics2 (HuggingFaceM4/idefics2-8b): a Mistral decoder under ``model.model.text_model``.

``get_decoder()`` reaches the Mistral model, so layers and final norm come from the base class.
The processor's documented input is one list of images per text (a flat list is split by
counting ``<image>`` in each text), so the adapter passes the nested form, one image per sample.
"""

from __future__ import annotations

import torch

from xlvlm.models.base import VLM


class Idefics2VLM(VLM):
    family = "idefics2"

    def _processor_inputs(self, texts: list[str], images: list) -> dict[str, torch.Tensor]:
        nested = [[image] for image in images]
        return dict(self.processor(images=nested, text=texts, return_tensors="pt", padding=True))
