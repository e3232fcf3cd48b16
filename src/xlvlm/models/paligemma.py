"""PaliGemma (google/paligemma2-3b-mix-224, ...): no chat template in the released checkpoints.

PaliGemma's own format is the plain prompt: the processor puts the image tokens and BOS before
it and a newline after it; for teacher forcing the answer goes as the processor's ``suffix``
(followed by EOS), as in PaliGemma's fine-tuning. ``token_type_ids`` mark the prefix (image +
prompt, 0), which attends bidirectionally, and the suffix (1), which is causal; tokens appended
after a generation are suffix tokens. The stored ``text`` is the prompt given to the processor
(the answer, when teacher forcing, is the sample's ``answer``). A checkpoint that does ship a
chat template is used through it, like every other family.
"""

from __future__ import annotations

from typing import Sequence

from xlvlm.models.base import VLM
from xlvlm.models.registry import register


@register("paligemma", name="PaliGemma", examples=("google/paligemma2-3b-mix-224", "google/paligemma-3b-mix-224"),
          not_checked="checkpoints that ship a chat template (served through it, like other families)")
class PaliGemmaVLM(VLM):
    def format_prompt(self, prompt: str, answer: str | None = None) -> tuple[str, str]:
        if self.chat_template:
            return super().format_prompt(prompt, answer)
        return prompt, prompt

    def _encode_inputs(self, samples: Sequence[dict], images: list, answers: list[str | None], padding_side: str):
        if self.chat_template:
            return super()._encode_inputs(samples, images, answers, padding_side)
        prompts = [s["prompt"] for s in samples]
        kwargs = dict(padding=True, padding_side=padding_side, return_tensors="pt")
        forced = any(a is not None for a in answers)
        if forced:
            kwargs["suffix"] = list(answers)
        inputs = self._call_processor(lambda: self.processor(text=prompts, images=[[im] for im in images], **kwargs),
                                      len(samples))
        inputs.pop("labels", None)  # training targets: not a model input here
        prompt_lengths = None
        if forced:  # the prefix: real tokens of type 0
            prefix = (inputs["token_type_ids"] == 0) & inputs["attention_mask"].bool()
            prompt_lengths = prefix.sum(dim=1).tolist()
        return inputs, prompts, prompt_lengths

    def _appended_value(self, key: str) -> int:
        return 1 if key in ("attention_mask", "token_type_ids") else 0
