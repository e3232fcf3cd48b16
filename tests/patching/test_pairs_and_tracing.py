"""Pairs that do not align, answers that cannot be told apart, causal tracing's noise, the grid."""

import pytest
import torch

from xlvlm.errors import XlvlmError
from xlvlm.patching import make_pairs, patch
from xlvlm.patching.exact import prepare_pairs


def test_a_pair_whose_prompts_do_not_align_is_named(original, pair_samples):
    clean, corrupted = pair_samples
    longer = [dict(corrupted[0], prompt="what is the color of the shape in the image?")]
    with pytest.raises(XlvlmError, match="pair 'pair0': the clean and corrupted prompts are .* tokens long"):
        patch(original, make_pairs(clean[:1], longer), layers=[0])


def test_a_clean_sample_without_its_corrupted_one_is_named(pair_samples):
    clean, corrupted = pair_samples
    with pytest.raises(XlvlmError, match="pair 'pair1': no corrupted sample with this id"):
        make_pairs(clean[:2], corrupted[:1])


def test_answers_that_share_their_first_token_are_refused(original, pair_samples):
    clean, corrupted = pair_samples
    with pytest.raises(XlvlmError, match="start with the same token"):
        patch(original, make_pairs(clean[:1], corrupted[:1], answers=["red", "red"]), layers=[0])


def test_causal_tracing_is_seeded_and_exact(original, pair_samples):
    clean, _ = pair_samples
    pairs = make_pairs(clean[:2])  # no corrupted samples: noise on the image tokens
    first = patch(original, pairs, layers=["embed", 3], positions="groups", metric="prob", seed=1)
    again = patch(original, pairs[1:], layers=["embed", 3], positions="groups", metric="prob", seed=1, batch_size=1)
    other = patch(original, pairs[1:], layers=["embed", 3], positions="groups", metric="prob", seed=2)
    assert first.pairs[1].corrupted == pytest.approx(again.pairs[0].corrupted, abs=1e-6)
    late = patch(original, pairs[1:], layers=[3], positions="groups", metric="prob", seed=1)
    assert late.pairs[0].corrupted == pytest.approx(again.pairs[0].corrupted, abs=1e-6)  # noised without "embed"
    assert first.pairs[1].corrupted != pytest.approx(other.pairs[0].corrupted, abs=1e-6)
    for pair in first.pairs:
        assert pair.traced and pair.clean > 0.9 and pair.corrupted < pair.clean - 1e-4  # the noise blurs the colour
        # The clean image embeddings undo the noise; the last token at the last block carries all.
        assert pair.recovery[0, 0] == pytest.approx(1.0, abs=1e-4)
        assert pair.recovery[1, 3] == pytest.approx(1.0, abs=1e-4)


def test_grid_cells_cover_the_image_tokens(original, pair_samples):
    clean, corrupted = pair_samples
    result = patch(original, make_pairs(clean[:1], corrupted[:1]), layers=["embed"], positions="grid:2")
    pair = result.pairs[0]
    assert pair.labels == ["cls", "r0c0", "r0c1", "r1c0", "r1c1"] and pair.grid == (2, 2) and pair.extra == 1
    assert all(0 < v < 1 for v in pair.recovery[0].tolist())  # each cell carries part of the colour
    # The cells split the image tokens: the class token, then 2 x 2 blocks of the 4 x 4 grid.
    cells = prepare_pairs(original, make_pairs(clean[:1], corrupted[:1]), "grid:2", "logit-diff")[0].cells
    image = cells.positions[0][0]
    assert sorted(p for cell in cells.positions for p in cell) == list(range(image, image + 17))
    assert cells.positions[1] == [image + 1, image + 2, image + 5, image + 6]
    with pytest.raises(XlvlmError, match="positions 'grid:0'"):
        patch(original, make_pairs(clean[:1], corrupted[:1]), layers=["embed"], positions="grid:0")


def test_vision_tower_sites_patch_what_the_projector_reads(original, pair_samples):
    """All image tokens patched at either vision-tower layer give the clean image features. The
    last layer reaches the projector through transformers' own output_hidden_states hooks, which
    must see the patch."""
    clean, corrupted = pair_samples
    vision = ["model.vision_tower.encoder.layers.0", "model.vision_tower.encoder.layers.1"]
    result = patch(original, make_pairs(clean[:1], corrupted[:1]), layers=vision, positions="groups")
    recovery = result.pairs[0].recovery
    assert recovery[:, 0].tolist() == pytest.approx([1.0, 1.0], abs=1e-4)
    assert torch.isnan(recovery[:, 1:]).all()  # text tokens have no place in the vision tower


def test_attention_and_mlp_sites(original, pair_samples):
    clean, corrupted = pair_samples
    result = patch(original, make_pairs(clean[:1], corrupted[:1]), layers="attn:0,mlp:-1,resid,0")
    assert result.sites == ["attn:0", "mlp:3", "0", "1", "2", "3"]
    recovery = result.pairs[0].recovery
    assert torch.isfinite(recovery).all()
    # Block 3's MLP writes into the last token what the answer is read from: patching it there moves the answer.
    assert recovery[1, 3] > 0.1 and recovery[1, 0] == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(XlvlmError, match="site 'attn:9': block 9 out of range"):
        patch(original, make_pairs(clean[:1], corrupted[:1]), layers="attn:9")


def test_token_cells_label_every_prompt_token(original, pair_samples):
    clean, corrupted = pair_samples
    pair = patch(original, make_pairs(clean[:1], corrupted[:1]), layers=["embed"], positions="tokens").pairs[0]
    assert len(pair.labels) == len(pair.tokens) == 29 and pair.labels[2] == "2:<image>" and pair.labels[-1] == "28::"
    images = [i for i, token in enumerate(pair.tokens) if token == "<image>"]
    # Only the image tokens differ between the two prompts: every other token patches nothing.
    others = [i for i in range(29) if i not in images]
    assert pair.recovery[0, others].abs().max() < 1e-5 and pair.recovery[0, images].abs().max() > 0.01
