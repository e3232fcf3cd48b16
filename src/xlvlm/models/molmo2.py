"""Molmo2 (allenai/Molmo2-*), the transformers-native successor of Molmo.

The base adapter fits it; what is particular is handled by the processor and the model:

* The image is a low-resolution view plus overlapping high-resolution crops, spelled as
  ``<low_res_im_start>``/``<im_start>`` ... ``<im_patch>``/``<im_col>`` ... ``<im_end>``. Only the
  ``<im_patch>`` tokens receive image features (``config.image_token_id`` maps to
  ``image_patch_id``), so they are the image tokens the ``image`` selector averages.
* ``mm_token_type_ids`` (from the processor) make the image tokens attend to each other in both
  directions at prefill; ``extend_inputs`` marks appended tokens as text, so a single pass over
  prompt + generation reproduces the states recorded during generation.
* The processor prepends BOS (EOS when the tokenizer has none) to every text.
* The embedding covers ``vocab_size + additional_vocab_size`` ids (the image tokens sit in the
  additional part) while the LM head only produces the first ``vocab_size``.
"""

from __future__ import annotations

from xlvlm.models.base import VLM
from xlvlm.models.registry import register


@register("molmo2", name="Molmo2", examples=("allenai/Molmo2-8B",))
class Molmo2VLM(VLM):
    def image_grid(self, batch, index: int):
        return None  # a low-resolution view plus overlapping crops: no single grid
