"""Steering as a user writes it: strategies as functions, the apply handle, Condition files,
and ``SteeringVector.train`` from two lists of samples."""

import pytest
import torch

import xlvlm
from xlvlm.errors import XlvlmError
from xlvlm.steer import Condition, SteeringVector
from xlvlm.steer.aggregators import AGGREGATORS, concept, mean_difference, mean_of_shifts, pca
from xlvlm.steer.operators import OPERATORS, add, project_out


def _store(path, features, ids):
    return xlvlm.FeatureStore.from_tensors(path, {"1": features}, [{"id": i} for i in ids])


def _hooks(model):
    return {(name, kind, key) for name, m in model.named_modules()
            for kind, hooks in (("f", m._forward_hooks), ("p", m._forward_pre_hooks)) for key in hooks}


def _logits(vlm, samples):
    batch = vlm.encode(samples)
    with torch.inference_mode():
        return vlm.model(**batch.inputs, use_cache=False).logits


# ---- aggregators --------------------------------------------------------------------------
def test_aggregators_are_plain_functions_of_rows():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(30, 5, generator=g)
    shift = torch.tensor([2.0, 0.0, -1.0, 0.0, 0.5])
    t = s + shift + 0.01 * torch.randn(30, 5, generator=g)
    torch.testing.assert_close(mean_difference(s, t[:20]), t[:20].mean(0) - s.mean(0))
    torch.testing.assert_close(mean_of_shifts(s, t), (t - s).mean(0))
    direction = pca(s, t)
    assert torch.nn.functional.cosine_similarity(direction, shift, dim=0) > 0.999
    torch.testing.assert_close(direction.norm(), shift.norm(), rtol=0.01, atol=0)
    assert mean_of_shifts.needs_pairs and pca.needs_pairs and not hasattr(mean_difference, "needs_pairs")
    with pytest.raises(XlvlmError, match="paired"):
        mean_of_shifts(s, t[:10])
    assert list(AGGREGATORS) == list(xlvlm.steer.METHODS)


def test_concept_aggregator_returns_the_vector_and_what_it_picked():
    g = torch.Generator().manual_seed(1)
    a, b = torch.zeros(6) + 10, torch.zeros(6) - 10
    s = a + 0.1 * torch.randn(12, 6, generator=g)
    t = b + 0.1 * torch.randn(15, 6, generator=g)
    vector, details = concept(s, t, n_concepts=2)
    torch.testing.assert_close(vector, t.mean(0) - s.mean(0), rtol=0, atol=1e-4)
    assert details["purity"] == [1.0, 1.0] and sorted(details["concept_sizes"]) == [12, 15]
    # mini-batch k-means components are centroids too: at the data's scale, not rescaled
    minibatch, _ = concept(s, t, n_concepts=2, concept_method="minibatch-kmeans")
    torch.testing.assert_close(minibatch, t.mean(0) - s.mean(0), rtol=0, atol=0.05)


def test_from_stores_runs_any_function_and_keeps_the_front_doors(tmp_path):
    g = torch.Generator().manual_seed(0)
    source, target = torch.randn(9, 4, generator=g), torch.randn(7, 4, generator=g) + 1
    s, t = _store(tmp_path / "s", source, [f"a{i}" for i in range(9)]), _store(tmp_path / "t", target,
                                                                               [f"a{i}" for i in range(7)])

    def median_shift(source_rows, target_rows):
        return target_rows.median(0).values - source_rows.median(0).values

    sv = SteeringVector.from_stores(s, t, [1], aggregator=median_shift)
    torch.testing.assert_close(sv.layer_activations["1"], target.median(0).values - source.median(0).values)
    assert sv.metadata["method"] == "median_shift" and sv.metadata["layers"] == ["1"]
    default = SteeringVector.from_stores(s, t, [1])
    assert default.metadata["method"] == "mean-diff"
    torch.testing.assert_close(default.layer_activations["1"],
                               SteeringVector.mean_difference(s, t, [1]).layer_activations["1"])
    paired = SteeringVector.from_stores(s, t, [1], aggregator=mean_of_shifts)  # pairs a0..a6 by id
    torch.testing.assert_close(paired.layer_activations["1"], (target - source[:7]).mean(0))
    with pytest.raises(XlvlmError, match="unknown steering method 'median'"):
        SteeringVector.compute(s, t, [1], method="median")


# ---- operators and the handle --------------------------------------------------------------
def test_operators_are_functions_and_names_stay_for_the_command_line():
    h = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    v = torch.tensor([0.0, 2.0])
    torch.testing.assert_close(h + add(h, v, 0.5), torch.tensor([[3.0, 5.0], [1.0, 1.0]]))
    torch.testing.assert_close(h + project_out(h, v, 1.0), torch.tensor([[3.0, 0.0], [1.0, 0.0]]))
    assert OPERATORS == {"add": add, "project-out": project_out}


def test_a_custom_operator_steers_like_the_named_one(vlm_of, samples):
    vlm = vlm_of("llava")
    sv = SteeringVector({"1": 3 * torch.randn(vlm.hidden_size, generator=torch.Generator().manual_seed(0))})
    with sv.apply(vlm, alpha=2.0, operator="add"):
        named = _logits(vlm, samples[:2])
    with sv.apply(vlm, alpha=2.0, operator=lambda hidden, vector, alpha: alpha * vector):
        custom = _logits(vlm, samples[:2])
    torch.testing.assert_close(custom, named)
    with pytest.raises(XlvlmError, match="unknown operator"):
        sv.apply(vlm, operator="multiply")


def test_apply_without_with_is_a_handle_that_steers_until_removed(vlm_of, samples):
    vlm = vlm_of("llava")
    base, hooks = _logits(vlm, samples[:2]), _hooks(vlm.model)
    sv = SteeringVector({"1": 3 * torch.randn(vlm.hidden_size, generator=torch.Generator().manual_seed(0))})
    with sv.apply(vlm, alpha=1.5):
        in_block = _logits(vlm, samples[:2])
    handle = sv.apply(vlm, alpha=1.5)
    assert handle.active
    torch.testing.assert_close(_logits(vlm, samples[:2]), in_block)  # steers at once, not a silent no-op
    handle.remove()
    handle.remove()  # a second remove does nothing
    assert not handle.active
    assert torch.equal(_logits(vlm, samples[:2]), base) and _hooks(vlm.model) == hooks
    with pytest.raises(RuntimeError):
        with sv.apply(vlm) as inside:
            assert isinstance(inside, xlvlm.steer.SteeringHandle)
            raise RuntimeError("boom")
    assert _hooks(vlm.model) == hooks


def test_a_failing_registration_leaves_no_hook_behind(vlm_of, monkeypatch):
    from xlvlm import hooks as hook_module
    from xlvlm.steer import apply as apply_module

    vlm = vlm_of("llava")
    before = _hooks(vlm.model)
    calls = []
    real_attach = hook_module.attach

    def attach_then_fail(ref, edit):
        calls.append(ref.key)
        if len(calls) == 2:
            raise RuntimeError("cannot hook")
        return real_attach(ref, edit)

    monkeypatch.setattr(apply_module, "attach", attach_then_fail)
    sv = SteeringVector({k: torch.ones(vlm.hidden_size) for k in ("0", "2")})
    with pytest.raises(RuntimeError, match="cannot hook"):
        sv.apply(vlm)
    assert _hooks(vlm.model) == before


def test_apply_to_a_bare_transformers_model_says_what_to_pass(vlm_of):
    vlm = vlm_of("llava")
    sv = SteeringVector({"1": torch.ones(vlm.hidden_size)})
    with pytest.raises(XlvlmError, match=r"xlvlm.load_vlm\(name_or_path\).*not a LlavaForConditionalGeneration"):
        sv.apply(vlm.model)


# ---- Condition files -------------------------------------------------------------------------
def test_condition_saves_and_loads_with_methods(tmp_path):
    condition = Condition("2", torch.tensor([0.6, 0.8]), 0.25, above=False)
    path = condition.save(tmp_path / "gate.safetensors")
    back = Condition.load(path)
    assert (back.layer, back.threshold, back.above) == ("2", 0.25, False)
    assert torch.equal(back.direction, condition.direction)
    with pytest.raises(XlvlmError, match="NaN or inf"):
        Condition("2", torch.tensor([float("nan"), 1.0]), 0.0).save(tmp_path / "bad.safetensors")
    assert not (tmp_path / "bad.safetensors").exists()
    with pytest.raises(XlvlmError, match="condition file not found"):
        Condition.load(tmp_path / "missing.safetensors")


# ---- train -----------------------------------------------------------------------------------
def _answers(samples, answer):
    return [dict(s, id=f"{s['id']}-{answer}", answer=answer) for s in samples]


def test_train_from_two_lists_equals_the_vector_of_two_stores_on_disk(vlm_of, samples, tmp_path):
    vlm = vlm_of("llava")
    positive, negative = samples[:5], samples[3:]
    sv = SteeringVector.train(vlm, positive, negative, layers=[1, "final"], batch_size=3)
    pos = xlvlm.extract(vlm, positive, layers=[1, "final"], out=tmp_path / "pos", progress=False)
    neg = xlvlm.extract(vlm, negative, layers=[1, "final"], out=tmp_path / "neg", progress=False)
    reference = SteeringVector.mean_difference(neg, pos, [1, "final"])
    for key in ("1", "final"):
        torch.testing.assert_close(sv.layer_activations[key], reference.layer_activations[key], rtol=0, atol=1e-5)
    assert sv.metadata["method"] == "mean-diff" and sv.metadata["n_positive"] == 5
    assert not any(p.name not in ("pos", "neg") for p in tmp_path.iterdir())  # train wrote nothing


def test_train_from_pairs_with_a_paired_method(vlm_of, samples, tmp_path):
    vlm = vlm_of("llava")
    yes, no = _answers(samples[:4], "yes"), _answers(samples[:4], "no")
    sv = SteeringVector.train(vlm, list(zip(no, yes)), layers=[2], method="mean-of-shifts", select="generated-mean")
    pos = xlvlm.extract(vlm, yes, layers=[2], select="generated-mean", out=tmp_path / "yes", progress=False)
    neg = xlvlm.extract(vlm, no, layers=[2], select="generated-mean", out=tmp_path / "no", progress=False)
    expected = (pos.features(2) - neg.features(2)).mean(0)
    torch.testing.assert_close(sv.layer_activations["2"], expected, rtol=0, atol=1e-5)
    assert sv.metadata["method"] == "mean-of-shifts"


def test_train_refuses_what_it_cannot_use(vlm_of, samples):
    vlm = vlm_of("llava")
    with pytest.raises(XlvlmError, match="positive: got str"):
        SteeringVector.train(vlm, "what shape?", samples[:2])
    with pytest.raises(XlvlmError, match="needs pairs"):
        SteeringVector.train(vlm, samples[:3], samples[:2], method=pca)
    with pytest.raises(XlvlmError, match="pairs"):
        SteeringVector.train(vlm, samples[:3])
    with pytest.raises(XlvlmError, match="xlvlm.load_vlm"):
        SteeringVector.train(vlm.model, samples[:2], samples[2:4])
