"""Normalized: any kind of steering at a stated norm per vector, so alpha means the same whatever
made the vectors; the typical state norm it is measured in."""

import torch

from xlvlm.steer import PerSampleSteering, SteeringVector
from xlvlm.steer.scale import Normalized, typical_state_norm


def test_every_vector_gets_the_stated_norm_and_keeps_its_direction():
    fixed = SteeringVector({"1": torch.tensor([3.0, 4.0, 0.0])}, {"method": "mean-diff"})
    rows = PerSampleSteering({"1": torch.tensor([[0.0, 2.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])}, ["a", "b", "c"])
    for steering, ids in ((fixed, None), (rows, ["c", "a", "b"])):
        vectors = Normalized(steering, {"1": 5.0}).batch_vectors(None, ids)["1"]
        raw = steering.batch_vectors(None, ids)["1"]
        norms = vectors.reshape(-1, 3).norm(dim=1)
        for norm, original, scaled in zip(norms, raw.reshape(-1, 3), vectors.reshape(-1, 3)):
            if original.norm() == 0:  # a zero vector stays zero (no direction to scale)
                assert norm == 0
            else:
                assert torch.isclose(norm, torch.tensor(5.0))
                assert torch.allclose(scaled / 5.0, original / original.norm())
    assert Normalized(fixed).batch_vectors(None, None)["1"].norm() == 1.0  # unit without a scale


def test_normalized_steering_generates_as_the_rescaled_vector(vlm_of, samples):
    vlm = vlm_of("llava")
    direction = torch.randn(vlm.hidden_size, generator=torch.Generator().manual_seed(1)) * 7
    fixed = SteeringVector({"1": direction}, {"method": "mean-diff"})
    rescaled = SteeringVector({"1": direction / direction.norm() * 3.0}, {"method": "mean-diff"})
    with Normalized(fixed, {"1": 3.0}).apply(vlm, alpha=2):
        ours = vlm.generate(samples[:4], max_new_tokens=3)
    with rescaled.apply(vlm, alpha=2):
        expected = vlm.generate(samples[:4], max_new_tokens=3)
    assert ours == expected


def test_typical_state_norm_is_the_mean_last_prompt_state_norm(vlm_of, samples):
    vlm = vlm_of("llava")
    measured = typical_state_norm(vlm, samples, [1], n=3)
    norms = []
    for sample in samples[:3]:  # one at a time, through transformers' own hidden states
        batch = vlm.encode([sample])
        with torch.no_grad():
            hidden = vlm.model(**batch.inputs, output_hidden_states=True).hidden_states[2]
        norms.append(hidden[0, -1].float().norm())
    assert abs(measured["1"] - float(torch.stack(norms).mean())) < 1e-4
