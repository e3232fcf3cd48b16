"""``vlm.score`` / ``vlm.logit_difference`` / ``vlm.generate(return_scores=True)``, as a user calls them.

The reference shares no code with the adapter: one sample through transformers' documented path,
``model(**processor.apply_chat_template(messages, tokenize=True, return_dict=True))`` for the
log-probabilities of an answer (its tokens found from the reference's own ids), and
``model.generate(output_scores=True, return_dict_in_generate=True)`` for the per-step top-k.
Steering is checked against a plain forward hook that adds alpha * v to a block's output.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import xlvlm
from xlvlm.errors import XlvlmError

FAMILIES = ["llava", "qwen2_vl", "idefics2"]
ANSWERS = ["a red circle", "blue", "no"]


def _messages(sample: dict, answer: str | None) -> list[dict]:
    image = Image.open(sample["image"]).convert("RGB")
    messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                             {"type": "text", "text": sample["prompt"]}]}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def _inputs(processor, sample, answer):
    return dict(processor.apply_chat_template(_messages(sample, answer), add_generation_prompt=answer is None,
                                              tokenize=True, return_dict=True, return_tensors="pt"))


def reference_log_prob(vlm, sample: dict, answer: str) -> float:
    """sum_i log P(answer token i | everything before it), from the model's own logits."""
    model, processor = vlm.model, vlm.processor
    prompt_length = _inputs(processor, sample, None)["input_ids"].shape[1]
    inputs = _inputs(processor, sample, answer)
    ids = inputs["input_ids"][0].tolist()
    n = len(processor.tokenizer.encode(answer, add_special_tokens=False))
    answer_ids = ids[prompt_length:prompt_length + n]
    assert processor.tokenizer.decode(answer_ids).strip() == answer  # the span really is the answer
    with torch.inference_mode():
        logits = model(**inputs, use_cache=False).logits[0].float()
    log_probs = logits.log_softmax(-1)
    return float(sum(log_probs[prompt_length - 1 + i, t] for i, t in enumerate(answer_ids)))


def reference_top_k(vlm, sample: dict, max_new_tokens: int, k: int) -> list[tuple[list[int], list[float]]]:
    inputs = _inputs(vlm.processor, sample, None)
    with torch.inference_mode():
        out = vlm.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                 output_scores=True, return_dict_in_generate=True)
    steps = []
    for scores in out.scores:
        probs, ids = scores[0].float().softmax(-1).topk(k)
        steps.append((ids.tolist(), probs.tolist()))
    eos = vlm.eos_token_ids
    generated = out.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    cut = next((i + 1 for i, t in enumerate(generated) if t in eos), len(generated))
    return steps[:cut]


class AddToBlock:
    """The reference's own steering: a forward hook adding alpha * v to block ``index``'s output."""

    def __init__(self, vlm, index: int, vector: torch.Tensor, alpha: float):
        self.block, self.delta = vlm.model.get_decoder().layers[index], alpha * vector

    def __enter__(self):
        def hook(module, args, output):
            if isinstance(output, tuple):
                return (output[0] + self.delta,) + output[1:]
            return output + self.delta

        self.handle = self.block.register_forward_hook(hook)

    def __exit__(self, *exc):
        self.handle.remove()


@pytest.mark.parametrize("family", FAMILIES)
def test_score_equals_transformers_logits_for_each_sample_and_answer(family, vlm_of, samples):
    vlm = vlm_of(family)
    scores = vlm.score(samples[:3], ANSWERS, batch_size=4)  # 9 rows in batches of 4: padding crosses batches
    assert scores.shape == (3, len(ANSWERS))
    expected = torch.tensor([[reference_log_prob(vlm, s, a) for a in ANSWERS] for s in samples[:3]])
    torch.testing.assert_close(scores, expected, rtol=0, atol=1e-4)
    assert (scores < 0).all()


def test_score_takes_one_list_of_answers_per_sample(vlm_of, samples):
    vlm = vlm_of("llava")
    per_sample = vlm.score(samples[:2], [["blue", "no"], ["no", "a red circle"]])
    together = vlm.score(samples[:2], ["blue", "no", "a red circle"])
    torch.testing.assert_close(per_sample, torch.stack([together[0, [0, 1]], together[1, [1, 2]]]))


def test_logit_difference_of_single_tokens_is_the_difference_of_their_logits(vlm_of, samples):
    vlm = vlm_of("llava")
    tokenizer = vlm.processor.tokenizer
    first, second = "yes", "no"
    ids = [tokenizer.encode(word, add_special_tokens=False) for word in (first, second)]
    assert all(len(i) == 1 for i in ids)
    inputs = _inputs(vlm.processor, samples[0], None)
    with torch.inference_mode():
        last = vlm.model(**inputs, use_cache=False).logits[0, -1].float()
    expected = last[ids[0][0]] - last[ids[1][0]]
    got = vlm.logit_difference(samples[:1], first, second)
    assert got.shape == (1,)
    torch.testing.assert_close(got[0], expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_return_scores_equals_transformers_generate_scores(family, vlm_of, samples):
    vlm = vlm_of(family)
    k = 3
    records = vlm.generate(samples[:3], max_new_tokens=4, batch_size=3, return_scores=True, top_k=k)
    assert [r["id"] for r in records] == [s["id"] for s in samples[:3]]
    assert [r["prediction"] for r in records] == vlm.generate(samples[:3], max_new_tokens=4)
    for sample, record in zip(samples[:3], records):
        expected = reference_top_k(vlm, sample, 4, k)
        assert len(record["top_k"]) == len(expected)
        for step, (ids, probs) in zip(record["top_k"], expected):
            assert [t["id"] for t in step] == ids
            torch.testing.assert_close(torch.tensor([t["prob"] for t in step]), torch.tensor(probs),
                                       rtol=0, atol=1e-4)
            assert step[0]["token"] == vlm.processor.tokenizer.decode([ids[0]])


def test_score_and_top_k_under_steering_match_a_plain_hook(vlm_of, samples):
    vlm = vlm_of("llava")
    layer, alpha = 1, 3.0
    vector = torch.randn(vlm.hidden_size, generator=torch.Generator().manual_seed(0))
    sv = xlvlm.SteeringVector({str(layer): vector})
    with sv.apply(vlm, alpha=alpha):
        steered = vlm.score(samples[:2], ANSWERS)
        records = vlm.generate(samples[:2], max_new_tokens=3, return_scores=True, top_k=2)
    with AddToBlock(vlm, layer, vector, alpha):
        expected = torch.tensor([[reference_log_prob(vlm, s, a) for a in ANSWERS] for s in samples[:2]])
        expected_top = [reference_top_k(vlm, s, 3, 2) for s in samples[:2]]
    torch.testing.assert_close(steered, expected, rtol=0, atol=1e-4)
    assert not torch.allclose(steered, vlm.score(samples[:2], ANSWERS))  # the steering changed the scores
    for record, steps in zip(records, expected_top):
        assert [[t["id"] for t in step] for step in record["top_k"]] == [ids for ids, _ in steps]


def test_obvious_mistakes_are_one_line_errors(vlm_of, samples):
    vlm = vlm_of("llava")
    with pytest.raises(XlvlmError, match="got str .*pass a list of sample dicts"):
        vlm.generate("what shape?")
    with pytest.raises(XlvlmError, match="got one sample dict"):
        vlm.score(samples[0], ["yes"])
    with pytest.raises(XlvlmError, match="candidates"):
        vlm.score(samples[:2], "yes")
    with pytest.raises(XlvlmError, match="one non-empty list per sample"):
        vlm.score(samples[:2], [["yes"]])
    with pytest.raises(XlvlmError, match="top_k"):
        vlm.generate(samples[:1], return_scores=True, top_k=0)
