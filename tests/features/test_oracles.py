"""Recorded features against transformers' own output_hidden_states, and batch-size invariance."""

import pytest
import torch

import xlvlm
from xlvlm.hooks import record
from xlvlm.features.run import extract_batch_teacher_forced, extract_batch_generated
from xlvlm.features.selectors import parse_selector

from xlvlm.models import families
from tests.standins import tiny_builders

FAMILIES = [f for f in sorted(families()) if f in tiny_builders()]


def _block(vlm, i: int):
    """The layer spec of block i's own output, which HF's output_hidden_states[i + 1] holds: the
    index, or for Qwen3-VL (whose layer i is what block i + 1 reads, deepstack added; see
    tests/models/test_families.py) the block's module name."""
    return vlm.block_output_name(i) if hasattr(vlm, "block_output_name") else i


def _hidden_states(vlm, sample):
    batch = vlm.encode([sample])
    with torch.inference_mode():
        out = vlm.model(**batch.inputs, output_hidden_states=True, use_cache=False)
    return out.hidden_states, batch


@pytest.mark.parametrize("family", FAMILIES)
def test_recorded_layers_equal_output_hidden_states(family, vlm_of, samples):
    vlm = vlm_of(family)
    n = vlm.num_layers
    hidden, batch = _hidden_states(vlm, samples[0])
    blocks = {i: str(_block(vlm, i)) for i in (0, 1, n - 2)}
    with record(vlm, [*blocks.values(), n - 1, "final"]) as rec:
        vlm.forward(batch)
    for i, key in blocks.items():
        torch.testing.assert_close(rec.stacked(key), hidden[i + 1], rtol=0, atol=1e-6)
    torch.testing.assert_close(rec.stacked("final"), hidden[-1], rtol=0, atol=1e-6)
    # HF's last entry is the final norm's output; block n-1's own output is its input.
    with torch.inference_mode():
        normed = vlm.final_norm(rec.stacked(str(n - 1)))
    torch.testing.assert_close(normed, hidden[-1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_extracted_all_tokens_equal_output_hidden_states(family, vlm_of, samples, tmp_path):
    vlm = vlm_of(family)
    block = str(_block(vlm, 1))
    store = xlvlm.extract(vlm, samples[:3], layers=[block, "final"], select="all", out=tmp_path / "s",
                          batch_size=3, progress=False)
    for i, sample in enumerate(samples[:3]):
        hidden, _ = _hidden_states(vlm, sample)
        rows = store.row_sample == i
        torch.testing.assert_close(store.features(block)[rows], hidden[2][0], rtol=0, atol=1e-5)
        torch.testing.assert_close(store.features("final")[rows], hidden[-1][0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
# last-prompt, image and token:WORD at batch 8 are checked against transformers itself in
# tests/models/test_transformers_oracle.py; these are the selectors it does not cover.
@pytest.mark.parametrize("select", ["all", "generated-mean"])
def test_teacher_forced_batch_8_equals_batch_1(family, select, vlm_of, samples):
    vlm = vlm_of(family)
    selector = parse_selector(select)
    together = extract_batch_teacher_forced(vlm, samples, ["0", "final"], selector)
    for i, sample in enumerate(samples):
        alone = extract_batch_teacher_forced(vlm, [sample], ["0", "final"], selector)
        for key in ("0", "final"):
            torch.testing.assert_close(together.rows[key][together.row_sample == i], alone.rows[key], rtol=1e-4, atol=1e-5,
                                       equal_nan=True)  # NaN: no response token to average
    assert together.present == [True] * len(samples)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("select", ["generated-mean", "all"])
def test_generate_batch_8_equals_batch_1(family, select, vlm_of, samples):
    vlm = vlm_of(family)
    selector = parse_selector(select)
    together = extract_batch_generated(vlm, samples, ["1", "final"], selector, max_new_tokens=4)
    for i, sample in enumerate(samples):
        alone = extract_batch_generated(vlm, [sample], ["1", "final"], selector, max_new_tokens=4)
        assert together.predictions[i] == alone.predictions[0]
        for key in ("1", "final"):
            torch.testing.assert_close(together.rows[key][together.row_sample == i], alone.rows[key], rtol=1e-4, atol=1e-5,
                                       equal_nan=True)  # NaN: no response token to average


@pytest.mark.parametrize("family", FAMILIES)
def test_generated_states_equal_a_forward_over_prompt_and_generation(family, vlm_of, samples):
    """States recorded step by step during generation equal a single forward pass."""
    vlm = vlm_of(family)
    sample = samples[1]
    gen = extract_batch_generated(vlm, [sample], ["final"], parse_selector("all"), max_new_tokens=5)
    generation = vlm.generate_batch([sample], max_new_tokens=5)
    tokens = generation.sequences[0]
    eos = vlm.eos_token_ids
    width = generation.batch.input_ids.shape[1]
    kept = [t for t in tokens[width:].tolist()[:5]]
    kept = kept[:next((i for i, t in enumerate(kept) if t in eos), len(kept))]
    # A random tiny model may generate an image placeholder (Mistral 3's [IMG] is in its LM head's
    # vocabulary), which a re-read would take for an image slot; real models do not. Stop before it.
    kept = kept[:next((i for i, t in enumerate(kept) if t == vlm.image_token_id), len(kept))]
    inputs = vlm.extend_inputs(generation.batch, torch.tensor([kept], dtype=torch.long))
    with torch.inference_mode():
        hidden = vlm.model(**inputs, output_hidden_states=True, use_cache=False).hidden_states
    torch.testing.assert_close(gen.rows["final"][:width + len(kept)], hidden[-1][0], rtol=1e-4, atol=1e-5)
