"""Patching on the organism against a reference written here with bare torch hooks, sharing no
code with xlvlm.patching (its own tokenization, positions, hooks and metric), and attribution
patching against exact patching."""

import pytest
import torch
from scipy.stats import spearmanr

from xlvlm.patching import attribute, make_pairs, patch


def _inputs(model_vlm, sample):
    """The processor's own tokens for the prompt alone (the generation prompt ends it)."""
    from PIL import Image

    processor = model_vlm.processor
    conversation = [{"role": "user", "content": [{"type": "image", "image": Image.open(sample["image"]).convert("RGB")},
                                                 {"type": "text", "text": sample["prompt"]}]}]
    return processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True,
                                         return_dict=True, return_tensors="pt")


def _groups(ids, tokenizer, image_id):
    """image / question / template / last positions, read off the organism's template
    "USER: <image>... QUESTION ASSISTANT:"."""
    ids = ids.tolist()
    image = [i for i, t in enumerate(ids) if t == image_id]
    assistant = ids.index(tokenizer.convert_tokens_to_ids("ASSISTANT"))
    question = list(range(image[-1] + 1, assistant))
    last = len(ids) - 1
    template = [i for i in range(len(ids)) if i not in image and i not in question and i != last]
    return [image, question, template, [last]]


def _reference(model, processor, clean, corrupted, answers):
    """Recovery (embed + blocks, 4 groups) with plain forward hooks on the HF model."""
    blocks = model.model.language_model.layers
    tokenizer = processor.tokenizer
    targets = [tokenizer.convert_tokens_to_ids(a) for a in answers]
    a, b = clean, corrupted
    groups = _groups(a["input_ids"][0], tokenizer, model.config.image_token_index)
    saved = {}

    def metric(inputs):
        with torch.no_grad():
            logits = model(**inputs).logits[0, -1]
        return float(logits[targets[0]] - logits[targets[1]])

    handles = [blocks[0].register_forward_pre_hook(lambda m, args: saved.__setitem__(-1, args[0].clone()) or None)]
    for i, block in enumerate(blocks):
        handles.append(block.register_forward_hook(lambda m, args, out, i=i: saved.__setitem__(i, out.clone()) or None))
    m_clean = metric(a)
    for handle in handles:
        handle.remove()
    m_corr = metric(b)
    out = torch.zeros(len(blocks) + 1, 4)
    for row, layer in enumerate(range(-1, len(blocks))):
        for col, positions in enumerate(groups):
            def put(hidden, positions=positions, layer=layer):
                hidden = hidden.clone()
                hidden[0, positions] = saved[layer][0, positions]
                return hidden
            if layer < 0:
                handle = blocks[0].register_forward_pre_hook(lambda m, args: (put(args[0]), *args[1:]))
            else:
                handle = blocks[layer].register_forward_hook(lambda m, args, out: put(out))
            try:
                out[row, col] = (metric(b) - m_corr) / (m_clean - m_corr)
            finally:
                handle.remove()
    return out


def test_recovery_equals_plain_hooks_reference(original, pair_samples):
    clean, corrupted = pair_samples
    result = patch(original, make_pairs(clean[:2], corrupted[:2]), positions="groups", batch_size=8)
    assert result.sites == ["embed", "0", "1", "2", "3"]
    for i in range(2):
        expected = _reference(original.model, original.processor, _inputs(original, clean[i]),
                              _inputs(original, corrupted[i]), [clean[i]["answer"], corrupted[i]["answer"]])
        torch.testing.assert_close(result.pairs[i].recovery, expected, rtol=0, atol=1e-5)


def test_clean_and_corrupted_metrics_are_logit_differences(original, pair_samples):
    clean, corrupted = pair_samples
    result = patch(original, make_pairs(clean[:1], corrupted[:1]), layers=[0], positions="groups")
    pair = result.pairs[0]
    first, second = pair.answers
    assert pair.clean == pytest.approx(float(original.logit_difference(clean[:1], first, second)[0]), abs=1e-4)
    assert pair.corrupted == pytest.approx(float(original.logit_difference(corrupted[:1], first, second)[0]), abs=1e-4)


def test_attribution_ranks_cells_like_exact_patching(original, pair_samples):
    pairs = make_pairs(*pair_samples)
    exact = patch(original, pairs, positions="groups", batch_size=32).mean_recovery()
    quick = attribute(original, pairs, positions="groups").mean_recovery()
    assert spearmanr(exact.flatten(), quick.flatten()).statistic >= 0.8
