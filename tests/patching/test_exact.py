"""Exactness of activation patching on a tiny model of every registered family.

A pair here is one image with two questions of the same length: every family then runs the
same vision features in both prompts (Qwen3-VL's deepstack and Mllama's cross-attention read
the image outside the residual stream), so copying the whole prompt at the embeddings must give
back the clean run exactly.
"""

import pytest
import torch

from xlvlm.models import families
from xlvlm.patching import make_pairs, patch
from xlvlm.patching.exact import baselines, prepare_pairs
from xlvlm.patching.runs import Row, forward_rows, read_metric
from xlvlm.patching.sites import resolve_sites
from tests.standins import tiny_builders

FAMILIES = [f for f in sorted(families()) if f in tiny_builders()]


def question_pairs(samples, n: int = 1):
    """n pairs: image i asked about a red shape (clean) and a blue one (corrupted)."""
    clean = [{"id": f"q{i}", "image": samples[i]["image"], "prompt": "is there a red shape in the image?",
              "answer": "yes"} for i in range(n)]
    corrupted = [dict(s, prompt=s["prompt"].replace("red", "blue"), answer="no") for s in clean]
    return make_pairs(clean, corrupted)


@pytest.mark.parametrize("family", FAMILIES)
def test_patching_is_exact(family, vlm_of, samples):
    vlm = vlm_of(family)
    pairs = question_pairs(samples, 2)
    sites = resolve_sites(vlm, ["embed", -1])
    together = patch(vlm, pairs, layers=["embed", -1], batch_size=8)
    preps = prepare_pairs(vlm, pairs[:1], "all", "logit-diff")
    clean, corrupted = baselines(vlm, preps, sites, "logit-diff", 3.0, 0)
    prep = preps[0]
    # The whole logits vector at the answer position: a random tiny model's two answers are
    # close, its whole next-token distribution is not.
    (clean_logits, corrupted_logits), _ = forward_rows(vlm, [Row(prep, False), Row(prep, True)], sites)
    assert (clean_logits - corrupted_logits).abs().max() > 1e-3  # the two questions are told apart
    everything = (list(range(prep.length)), prep.states["embed"])
    rows = [Row(prep, True), Row(prep, True, {"embed": everything}), Row(prep, True)]
    logits, _ = forward_rows(vlm, rows, sites)
    # No cell patched: the corrupted run, whatever else shares the batch.
    for b in (0, 2):
        torch.testing.assert_close(logits[b], corrupted_logits, rtol=0, atol=1e-5)
    # The whole prompt patched at the first block's input: the clean run.
    torch.testing.assert_close(logits[1], clean_logits, rtol=0, atol=1e-5)
    values = read_metric(vlm, rows, sites, "logit-diff").cpu()
    torch.testing.assert_close(values, torch.stack([corrupted[0], clean[0], corrupted[0]]), rtol=0, atol=1e-5)
    # A batch of pairs equals one pair at a time.
    alone = patch(vlm, pairs[1:], layers=["embed", -1], batch_size=1)
    torch.testing.assert_close(together.pairs[1].patched, alone.pairs[0].patched, rtol=1e-4, atol=1e-5,
                               equal_nan=True)
    assert together.pairs[1].labels == alone.pairs[0].labels == ["image", "question", "template", "last"]
    # The question group holds the differing word: patching it at the embeddings recovers all
    # (up to the float error of a tiny model's small metric gap).
    assert together.pairs[0].recovery[0, 1] == pytest.approx(1.0, abs=1e-2)
