"""Every registered family against transformers' own end-to-end path on one sample.

The reference shares no code with the adapters: for each sample alone it builds the inputs the
way transformers documents (``processor.apply_chat_template(messages, add_generation_prompt=True,
tokenize=True, return_dict=True)``, the answer as the assistant turn for teacher forcing;
PaliGemma's plain prompt with ``suffix``; Molmo v1's ``processor.process``), runs
``model(**inputs, output_hidden_states=True)`` and ``model.generate``, and finds the positions
(last prompt token, image tokens, a word of the answer) from its own token ids. What
``xlvlm.extract`` stores for 8 samples in one batch must equal it within 1e-4.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import xlvlm
from xlvlm.models import families
from tests.standins import tiny_builders

FAMILIES = sorted(families())
MAX_NEW = 4
WORD = "circle"  # in every sample's answer ("a <colour> circle")
ATOL = 1e-4


def test_every_registered_family_has_a_tiny_model():
    missing = [f for f in FAMILIES if f not in tiny_builders()]
    assert not missing, f"registered families without a tiny builder: {missing}"


def test_every_tiny_model_has_a_registered_family():
    assert set(tiny_builders()) <= set(FAMILIES)


TESTED = [f for f in FAMILIES if f in tiny_builders()]


# ---- the reference ---------------------------------------------------------------------------
class Reference:
    """One sample through plain transformers: inputs, hidden states, positions, generation."""

    def __init__(self, vlm, sample: dict, answer: str | None):
        self.model, self.processor = vlm.model, vlm.processor
        self.family = self.model.config.model_type
        image = Image.open(sample["image"]).convert("RGB")
        self.inputs = self._inputs(vlm, sample["prompt"], image, answer)
        self.prompt_length = int(self._inputs(vlm, sample["prompt"], image, None)["input_ids"].shape[1])
        with torch.inference_mode():
            out = self.model(**self.inputs, output_hidden_states=True, use_cache=False)
        self.hidden = [h[0] for h in out.hidden_states]  # (T, D) each
        self.ids = self.inputs["input_ids"][0].tolist()

    def _inputs(self, vlm, prompt, image, answer):
        if self.family == "paligemma":  # no chat template: the plain prompt, the answer as suffix
            kwargs = {} if answer is None else {"suffix": answer}
            return dict(self.processor(text=prompt, images=image, return_tensors="pt", **kwargs))
        if self.family == "molmo":  # remote code: process() formats the prompt; the answer + EOS follow
            with vlm._torch_image_resize():  # the stand-in's TensorFlow resize, as in the adapter
                row = dict(self.processor.process(text=prompt, images=[image]))
            if answer is not None:
                tokenizer = self.processor.tokenizer
                extra = tokenizer.encode(" " + answer, add_special_tokens=False) + [tokenizer.eos_token_id]
                row["input_ids"] = torch.cat([row["input_ids"], torch.tensor(extra)])
            row = {k: v[None] for k, v in row.items()}
            row["attention_mask"] = torch.ones_like(row["input_ids"])
            return row
        messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                                 {"type": "text", "text": prompt}]}]
        if answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return dict(self.processor.apply_chat_template(messages, add_generation_prompt=answer is None,
                                                       tokenize=True, return_dict=True, return_tensors="pt"))

    def layer(self, key: str) -> torch.Tensor:
        """(T, D) residual stream after block ``key`` or the final norm's output."""
        if key == "final":
            return self.hidden[-1]
        index = int(key)
        if self.family == "qwen3_vl":
            return self._next_block_input(index)
        return self.hidden[index + 1]

    def _next_block_input(self, index: int) -> torch.Tensor:
        """Qwen3-VL adds deepstack features after blocks 0-2, which output_hidden_states misses:
        read what block index + 1 is called with."""
        seen = []
        block = self.model.model.language_model.layers[index + 1]
        handle = block.register_forward_pre_hook(
            lambda m, args, kwargs: seen.append((args[0] if args else kwargs["hidden_states"])[0].clone()),
            with_kwargs=True)
        try:
            with torch.inference_mode():
                self.model(**self.inputs, use_cache=False)
        finally:
            handle.remove()
        return seen[0]

    def positions(self, select: str) -> list[int]:
        if select == "last-prompt":
            return [self.prompt_length - 1]
        if select == "image":
            image_id = _image_token_id(self.model, self.processor)
            return [i for i, t in enumerate(self.ids[:self.prompt_length]) if t == image_id]
        word_id = self.processor.tokenizer.convert_tokens_to_ids(WORD)
        at = self.ids.index(word_id, self.prompt_length)
        # token:WORD keeps the state that predicts the word (one position before it, the
        # research convention); token-at:WORD the state at the word itself.
        return [at] if select.startswith("token-at:") else [at - 1]

    def features(self, key: str, select: str) -> torch.Tensor:
        rows = self.layer(key)[self.positions(select)]
        return rows.mean(0) if select == "image" else rows[0]


def _image_token_id(model, processor) -> int:
    for name in ("image_token_id", "image_token_index"):
        if getattr(model.config, name, None) is not None:
            return int(getattr(model.config, name))
    return processor.tokenizer.convert_tokens_to_ids("<im_patch>")  # Molmo v1


_CACHE: dict = {}


def reference(vlm, sample: dict, answer: str | None) -> Reference:
    """One Reference per model, sample and answer (the tests share them; models do not change)."""
    key = (id(vlm), sample["id"], answer)
    if key not in _CACHE:
        _CACHE[key] = Reference(vlm, sample, answer)
    return _CACHE[key]


def reference_generation(vlm, sample: dict) -> str:
    key = (id(vlm), sample["id"], "generate")
    if key not in _CACHE:
        _CACHE[key] = _generate(vlm, sample)
    return _CACHE[key]


def _generate(vlm, sample: dict) -> str:
    ref = reference(vlm, sample, None)
    model, tokenizer = ref.model, ref.processor.tokenizer
    if ref.family == "molmo":  # no generate in the remote code: greedy argmax over full re-runs
        inputs, new = dict(ref.inputs), []
        for _ in range(MAX_NEW):
            with torch.inference_mode():
                token = int(model(**inputs).logits[0, -1].argmax())
            new.append(token)
            if token == tokenizer.eos_token_id:
                break
            inputs["input_ids"] = torch.cat([inputs["input_ids"], torch.tensor([[token]])], dim=1)
            inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    else:
        with torch.inference_mode():
            out = model.generate(**ref.inputs, max_new_tokens=MAX_NEW, do_sample=False, num_beams=1)
        new = out[0, ref.inputs["input_ids"].shape[1]:].tolist()
    return tokenizer.decode(new, skip_special_tokens=True).strip()


# ---- the checks -------------------------------------------------------------------------------
def _store(vlm, samples, path, layers, select, **kwargs):
    return xlvlm.extract(vlm, samples, layers=layers, select=select, out=path, batch_size=8, progress=False,
                         **kwargs)


@pytest.mark.parametrize("family", TESTED)
@pytest.mark.parametrize("select", ["last-prompt", "image", f"token:{WORD}", f"token-at:{WORD}"])
def test_teacher_forced_batch_of_8_equals_transformers_on_each_sample(family, select, vlm_of, samples, tmp_path):
    vlm = vlm_of(family)
    store = _store(vlm, samples, tmp_path / "s", [0, 1, "final"], select)
    assert store.present.all()
    for i, sample in enumerate(samples):
        ref = reference(vlm, sample, sample["answer"] if select.startswith("token") else None)
        for key in ("0", "1", "final"):
            torch.testing.assert_close(store.features(key)[i], ref.features(key, select), rtol=0, atol=ATOL,
                                       msg=lambda m: f"{family} sample {i} layer {key}: {m}")


@pytest.mark.parametrize("family", TESTED)
def test_generation_batch_of_8_equals_generate_on_each_sample(family, vlm_of, samples, tmp_path):
    vlm = vlm_of(family)
    store = _store(vlm, samples, tmp_path / "g", [1, "final"], "last-prompt", generate=True,
                   max_new_tokens=MAX_NEW)
    for i, sample in enumerate(samples):
        assert store.samples[i]["prediction"] == reference_generation(vlm, sample), f"{family} sample {i}"
        ref = reference(vlm, sample, None)
        for key in ("1", "final"):
            torch.testing.assert_close(store.features(key)[i], ref.features(key, "last-prompt"), rtol=0, atol=ATOL)


@pytest.mark.parametrize("family", TESTED)
def test_steering_changes_the_features_and_leaving_restores_them(family, vlm_of, samples, tmp_path):
    vlm = vlm_of(family)
    torch.manual_seed(0)
    vector = xlvlm.SteeringVector({"1": torch.randn(vlm.hidden_size)})
    alpha = 4.0
    with vector.apply(vlm, alpha=alpha):
        steered = _store(vlm, samples, tmp_path / "steered", [1, "final"], "last-prompt", generate=True,
                         max_new_tokens=MAX_NEW)
    after = _store(vlm, samples, tmp_path / "after", [1, "final"], "last-prompt", generate=True,
                   max_new_tokens=MAX_NEW)
    for i, sample in enumerate(samples):
        ref = reference(vlm, sample, None)
        expected = ref.features("1", "last-prompt")
        # The steered layer is exactly the reference plus alpha * v; the model's output moved.
        torch.testing.assert_close(steered.features("1")[i], expected + alpha * vector.layer_activations["1"],
                                   rtol=0, atol=ATOL)
        assert (steered.features("final")[i] - ref.features("final", "last-prompt")).abs().max() > 1e-3
        torch.testing.assert_close(after.features("final")[i], ref.features("final", "last-prompt"), rtol=0, atol=ATOL)
        assert after.samples[i]["prediction"] == reference_generation(vlm, sample)
    changed = [s["prediction"] != reference_generation(vlm, samples[i]) for i, s in enumerate(steered.samples)]
    assert any(changed), f"{family}: steering changed no greedy answer"
