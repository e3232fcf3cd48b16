"""Per-sample (P2S) and learned (L2S) steering: planted data, batch 8 = batch 1 = plain hooks at
batch 1, hooks removed on errors, files checked on load."""

import json

import pytest
import torch
from safetensors.torch import save_file

import xlvlm
from xlvlm.errors import XlvlmError
from xlvlm.hooks import record
from xlvlm.models.base import batch_in_flight
from xlvlm.steer import LearnedSteering, PerSampleSteering, SteeringVector


def _store(features: dict, ids, present=None):
    samples = [{"id": sid} if present is None else {"id": sid, "present": ok} for sid, ok in
               zip(ids, present or [True] * len(ids))]
    return xlvlm.FeatureStore.from_tensors(features, samples)


def _hooks(model):
    """Every hook id on the model (transformers installs a few of its own on first use: call
    after a first generation)."""
    return {(name, kind, key) for name, m in model.named_modules()
            for kind, hooks in (("f", m._forward_hooks), ("p", m._forward_pre_hooks)) for key in hooks}


def _each_refused_in_one_line(load, cases: dict, tmp_path) -> None:
    """cases: {name: (tensors, header metadata, message)}: each file written, and refused by ``load``
    with one line naming it."""
    for name, (tensors, meta, message) in cases.items():
        bad = tmp_path / f"{name}.safetensors"
        save_file(tensors, bad, metadata=meta)
        with pytest.raises(XlvlmError, match=message) as info:
            load(bad)
        assert str(bad) in str(info.value) and "\n" not in str(info.value), name


# ---- P2S ----------------------------------------------------------------------------------------
def test_per_sample_vectors_equal_a_slow_per_id_reference(tmp_path):
    g = torch.Generator().manual_seed(0)
    ids = [f"x{i}" for i in range(12)]
    source = {"1": torch.randn(12, 5, generator=g), "final": torch.randn(12, 5, generator=g)}
    target = {k: torch.randn(12, 5, generator=g) for k in source}
    # the target lists the samples in another order, misses one, and one source sample is absent
    order = list(range(11, 0, -1))
    present = [i != 4 for i in range(12)]
    s = _store(source, ids, present)
    t = _store({k: v[order] for k, v in target.items()}, [ids[i] for i in order])
    p2s = PerSampleSteering.from_stores(s, t, [1, "final"])
    expected_ids = [sid for i, sid in enumerate(ids) if i not in (0, 4)]
    assert p2s.ids == expected_ids and p2s.layers == ["1", "final"] and len(p2s) == 10
    for key in ("1", "final"):
        for row, sid in enumerate(p2s.ids):
            i = ids.index(sid)
            torch.testing.assert_close(p2s.vectors[key][row], target[key][i] - source[key][i])
        torch.testing.assert_close(p2s.norms()[key], p2s.vectors[key].norm(dim=1))
    mean = p2s.mean()
    assert isinstance(mean, SteeringVector) and mean.metadata["method"] == "mean-of-shifts"
    torch.testing.assert_close(mean.layer_activations["1"], SteeringVector.from_stores(s, t, [1], "mean-of-shifts").layer_activations["1"])
    torch.testing.assert_close(p2s.vector("x7").layer_activations["final"], target["final"][7] - source["final"][7])
    torch.testing.assert_close(p2s.rows(["x9", "x2"], 1), torch.stack([target["1"][i] - source["1"][i] for i in (9, 2)]))
    assert p2s.subset(["x3", "x1"]).ids == ["x3", "x1"]
    with pytest.raises(XlvlmError, match="'x0' has no per-sample vector"):
        p2s.vector("x0")
    store = p2s.to_store()
    assert store.ids == p2s.ids and torch.equal(store.features("final"), p2s.vectors["final"])


def test_per_sample_save_load_round_trip_and_hostile_files(tmp_path):
    p2s = PerSampleSteering({"2": torch.randn(3, 4)}, ["a", "b", "c"], {"method": "per-sample", "model": "m"})
    path = p2s.save(tmp_path / "p.safetensors")
    back = PerSampleSteering.load(path)
    assert back.ids == p2s.ids and back.metadata == p2s.metadata and torch.equal(back.vectors["2"], p2s.vectors["2"])
    header = {"xlvlm_per_sample": json.dumps({"ids": ["a", "b", "c"], "metadata": {}})}
    cases = {
        "wrong rows": ({"layer/2": torch.randn(2, 4)}, header, "shape \\(2, 4\\); expected a float \\(3, D\\)"),
        "nan": ({"layer/2": torch.tensor([[0.0, float("nan")]] * 3)}, header, "NaN or inf"),
        "1-D": ({"layer/2": torch.randn(4)}, header, "expected a float"),
        "ints": ({"layer/2": torch.ones(3, 4, dtype=torch.int64)}, header, "expected a float"),
        "no header": ({"layer/2": torch.randn(3, 4)}, {}, "no readable 'xlvlm_per_sample' header"),
        "ids not strings": ({"layer/2": torch.randn(3, 4)},
                            {"xlvlm_per_sample": json.dumps({"ids": [1, 2, 3]})}, "not a string"),
        "duplicate ids": ({"layer/2": torch.randn(3, 4)},
                          {"xlvlm_per_sample": json.dumps({"ids": ["a", "a", "c"]})}, "appears twice"),
        "other tensor": ({"layer/2": torch.randn(3, 4), "pickle": torch.randn(1)}, header, "only tensors named"),
        "sizes": ({"layer/2": torch.randn(3, 4), "layer/3": torch.randn(3, 5)}, header, "different sizes"),
    }
    _each_refused_in_one_line(PerSampleSteering.load, cases, tmp_path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(XlvlmError, match="not a readable per-sample steering file"):
        PerSampleSteering.load(junk)
    with pytest.raises(XlvlmError, match="layer 2 hold NaN or inf"):
        PerSampleSteering({"2": torch.full((3, 4), float("inf"))}, ["a", "b", "c"])  # refused at construction


# ---- L2S training -------------------------------------------------------------------------------
def _planted(n=240, d=8, seed=0):
    """Context states x and vectors v = b + W tanh(A x): a known function of the context."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * 2 + 0.5
    a, w = torch.randn(6, d, generator=g) / d ** 0.5, torch.randn(d, 6, generator=g)
    v = torch.randn(d, generator=g) + torch.tanh(x @ a.T) @ w.T
    ids = [f"s{i}" for i in range(n)]
    return ids, x, v


def test_learned_steering_learns_a_planted_map():
    ids, x, v = _planted()
    context = _store({"0": x}, ids)
    shifts = PerSampleSteering({"1": v}, ids)
    settings = dict(context_layer=0, hidden=16, epochs=100, lr=3e-2, batch_size=256)  # full batches: fast
    model = LearnedSteering.fit(context, shifts, seed=0, **settings)
    report = model.metadata["training"]
    assert (report["n_train"], report["n_val"]) == (216, 24)
    # the held-out vectors are predicted far better than by the fixed mean vector
    assert report["val_cosine"] > 0.97 and report["mean_vector_val_cosine"] < 0.8, report
    assert report["val_relative_error"] < 0.5 * report["mean_vector_val_relative_error"], report
    assert len(model.history) == 100 and 1 <= report["best_epoch"] <= 100
    # predict reads raw states (the standardisation is folded into the encoder)
    pred = model.predict(x)
    assert float(torch.nn.functional.cosine_similarity(pred, v, dim=1).mean()) > 0.97
    # deterministic given the seed; another seed splits and starts otherwise
    again = LearnedSteering.fit(context, shifts, seed=0, **settings)
    assert all(torch.equal(a, b) for a, b in zip(model.weights().values(), again.weights().values()))
    other = LearnedSteering.fit(context, shifts, context_layer=0, hidden=16, epochs=2, seed=1)
    assert not torch.equal(other.encoder_weight, model.encoder_weight)


def test_learned_steering_fits_from_a_store_of_vectors_paired_by_id():
    ids, x, v = _planted(n=40)
    context = _store({"0": x.flip(0)}, ids[::-1])  # another order: pairing is by id
    shift_store = PerSampleSteering({"1": v}, ids).to_store()
    a = LearnedSteering.fit(context, shift_store, context_layer=0, hidden=4, epochs=3, seed=0)
    b = LearnedSteering.fit(_store({"0": x}, ids), PerSampleSteering({"1": v}, ids), context_layer=0, hidden=4,
                            epochs=3, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(a.weights().values(), b.weights().values()))
    assert a.metadata["steer_layer"] == "1" and a.metadata["context_layer"] == "0"


def test_learned_steering_refuses_bad_settings_in_one_line():
    ids, x, v = _planted(n=20)
    context, shifts = _store({"0": x, "3": x}, ids), PerSampleSteering({"1": v}, ids)
    cases = [
        (dict(context_layer=3), "context layer 3 comes after the steering layer 1"),
        (dict(context_layer=0, hidden=0), "hidden must be a positive integer"),
        (dict(context_layer=0, lr=float("nan")), "lr must be a finite number"),
        (dict(context_layer=0, val_fraction=0.9), "val_fraction must be"),
        (dict(context_layer=0, steer_layer=2), "no layer 2"),
    ]
    for kwargs, message in cases:
        with pytest.raises(XlvlmError, match=message):
            LearnedSteering.fit(context, shifts, **kwargs)
    with pytest.raises(XlvlmError, match="diverged at epoch [0-9]+ .* use a lower lr than 1e\\+30"):
        LearnedSteering.fit(context, shifts, context_layer=0, lr=1e30, epochs=3)
    with pytest.raises(XlvlmError, match="share no sample present in both; learned steering needs the same"):
        LearnedSteering.fit(_store({"0": x}, [f"other{i}" for i in range(20)]), shifts, context_layer=0)
    with pytest.raises(XlvlmError, match="share one sample; learned steering needs at least 2"):
        LearnedSteering.fit(_store({"0": x[:1]}, ids[:1]), shifts, context_layer=0)
    with pytest.raises(XlvlmError, match="hidden sizes differ: .* has 3, .* has 8"):
        LearnedSteering.fit(context, PerSampleSteering({"1": v[:, :3]}, ids), context_layer=0)


# ---- applying on a tiny model -------------------------------------------------------------------
def _random_learned(vlm, context_layer, steer_layer, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    d, h = vlm.hidden_size, 5
    return LearnedSteering(context_layer, steer_layer, torch.randn(h, d, generator=g) / d ** 0.5,
                           torch.randn(h, generator=g), scale * torch.randn(d, h, generator=g) / h ** 0.5,
                           scale * torch.randn(d, generator=g) / d ** 0.5)


def _plain_reference(vlm, sample, context_layer: int, steer_layer: int, predict, alpha, steps=4):
    """Batch 1 with bare torch hooks: read the prefill's last state at the context layer, add
    alpha * predict(state) at every position of the steering layer. Returns (text, states at layer 3)."""
    layers = vlm.decoder_layers
    seen = {}

    def read(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if hidden.shape[1] > 1:  # the prefill (batch 1: no padding, the last position is the last prompt token)
            seen["vector"] = predict(hidden[:, -1].float()).to(hidden.dtype)

    def add(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        new = hidden + alpha * seen["vector"][:, None, :]
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handles = [layers[context_layer].register_forward_hook(read), layers[steer_layer].register_forward_hook(add)]
    try:
        with record(vlm, ["3"]) as rec:
            text = vlm.generate_batch([sample], max_new_tokens=steps).texts[0]
    finally:
        for handle in handles:
            handle.remove()
    return text, rec.stacked("3")[0]


@pytest.mark.parametrize("context_layer,steer_layer,positions", [(1, 2, "all"), (2, 2, "all"),
                                                                  (0, 1, "from-last-prompt")])
def test_learned_apply_batch_8_equals_batch_1_equals_plain_hooks(context_layer, steer_layer, positions, vlm_of,
                                                                  samples):
    vlm = vlm_of("llava")
    model = _random_learned(vlm, context_layer, steer_layer)
    plain = vlm.generate_batch(samples, max_new_tokens=4).texts
    before = _hooks(vlm.model)
    with model.apply(vlm, alpha=1.5, positions=positions):
        with record(vlm, ["3"]) as rec:
            together = vlm.generate_batch(samples, max_new_tokens=4)
        both = rec.stacked("3")
        alone = []
        for sample in samples:
            with record(vlm, ["3"]) as rec1:
                alone.append((vlm.generate_batch([sample], max_new_tokens=4).texts[0], rec1.stacked("3")[0]))
    assert _hooks(vlm.model) == before
    assert plain != together.texts  # the steering does something
    for i, sample in enumerate(samples):
        offset = together.batch.offsets[i]
        text, states = alone[i]
        assert text == together.texts[i]
        torch.testing.assert_close(both[i, offset:offset + states.shape[0]], states, rtol=1e-4, atol=1e-4)
        if positions == "all":
            ref_text, ref_states = _plain_reference(vlm, sample, context_layer, steer_layer, model.predict, 1.5)
            assert ref_text == text
            torch.testing.assert_close(states, ref_states, rtol=1e-4, atol=1e-4)


def test_per_sample_oracle_batch_8_equals_batch_1_equals_plain_hooks(vlm_of, samples):
    vlm = vlm_of("llava")
    g = torch.Generator().manual_seed(1)
    ids = [s["id"] for s in samples]
    p2s = PerSampleSteering({"1": 3 * torch.randn(len(ids), vlm.hidden_size, generator=g)}, ids)
    vlm.generate_batch(samples[:2], max_new_tokens=2)
    before = _hooks(vlm.model)
    with p2s.apply(vlm, alpha=1.0):
        with record(vlm, ["3"]) as rec:
            together = vlm.generate_batch(samples, max_new_tokens=4)
        both = rec.stacked("3")
        predicted = vlm.predict(samples[::-1], max_new_tokens=4, batch_size=3)  # other batches, other order
    assert _hooks(vlm.model) == before and batch_in_flight(vlm.model) is None
    assert [r["prediction"] for r in predicted][::-1] == together.texts
    for i, sample in enumerate(samples):
        vector = p2s.vectors["1"][i]
        ref_text, ref_states = _plain_reference(vlm, sample, 1, 1, lambda state, v=vector: v[None, :], 1.0)
        offset = together.batch.offsets[i]
        assert ref_text == together.texts[i]
        torch.testing.assert_close(both[i, offset:offset + ref_states.shape[0]], ref_states, rtol=1e-4, atol=1e-4)


def test_hooks_and_listeners_removed_after_errors(vlm_of, samples):
    vlm = vlm_of("llava")
    vlm.generate_batch(samples[:2], max_new_tokens=2)
    before = _hooks(vlm.model)
    batch = vlm.encode(samples[:2], padding_side="left")
    with torch.inference_mode():
        plain = vlm.model(**batch.inputs).logits
    p2s = PerSampleSteering({"1": torch.randn(2, vlm.hidden_size)}, ["s0", "s1"])
    with pytest.raises(XlvlmError, match="'s4' has no per-sample vector"):
        with p2s.apply(vlm):
            vlm.generate_batch(samples[4:6], max_new_tokens=2)  # raised inside a hook, mid-generation
    with pytest.raises(XlvlmError, match="needs the samples of each batch"):
        with p2s.apply(vlm):
            vlm.forward(batch)  # a bare forward: no samples announced
    with pytest.raises(RuntimeError, match="boom"):
        with _random_learned(vlm, 1, 2).apply(vlm):
            raise RuntimeError("boom")
    handle = _random_learned(vlm, 0, 1).apply(vlm)
    handle.remove()
    handle.remove()  # idempotent
    assert _hooks(vlm.model) == before and batch_in_flight(vlm.model) is None
    with torch.inference_mode():
        assert torch.equal(vlm.model(**batch.inputs).logits, plain)


def test_apply_refuses_a_context_after_the_steered_layer_and_other_sizes(vlm_of, samples):
    vlm = vlm_of("llava")
    vlm.generate_batch(samples[:2], max_new_tokens=2)
    before = _hooks(vlm.model)
    model = _random_learned(vlm, 1, 2)
    with pytest.raises(XlvlmError, match="context layer 2 comes after the steering layer 1"):
        LearnedSteering("2", "1", *model.weights().values())
    model.context_layer = "-1"  # resolved on the model only: the last block, after layer 2
    with pytest.raises(XlvlmError, match="context layer -1 comes after the steered layer 2"):
        model.apply(vlm)
    small = LearnedSteering("0", "1", torch.randn(3, 4), torch.randn(3), torch.randn(4, 3), torch.randn(4))
    with pytest.raises(XlvlmError, match="size 4 but the model's hidden size"):
        small.apply(vlm)
    with pytest.raises(XlvlmError, match="size 4 but the model's hidden size"):
        PerSampleSteering({"1": torch.randn(1, 4)}, ["s0"]).apply(vlm)
    assert _hooks(vlm.model) == before


# ---- L2S files ----------------------------------------------------------------------------------
def test_learned_save_load_round_trip_and_hostile_files(tmp_path):
    ids, x, v = _planted(n=30)
    model = LearnedSteering.fit(_store({"0": x}, ids), PerSampleSteering({"1": v}, ids), context_layer=0, hidden=4,
                                epochs=2)
    path = model.save(tmp_path / "l.safetensors")
    back = LearnedSteering.load(path)
    assert (back.context_layer, back.steer_layer, back.hidden, back.hidden_size) == ("0", "1", 4, 8)
    assert back.metadata == json.loads(json.dumps(model.metadata)) and back.history == model.history
    torch.testing.assert_close(back.predict(x), model.predict(x), rtol=0, atol=0)
    (tmp_path / "dir").mkdir()
    model.save(tmp_path / "dir" / "learned.safetensors")
    assert LearnedSteering.load(tmp_path / "dir").steer_layer == "1"  # a folder of `xlvlm steer learn`

    weights = {k: v.clone() for k, v in model.weights().items()}
    good = {"format": 1, "context_layer": "0", "steer_layer": "1", "hidden": 4, "hidden_size": 8}

    def header(**changes):
        return {"xlvlm_learned_steering": json.dumps({**good, **changes})}

    nan = dict(weights, **{"decoder.bias": torch.full((8,), float("nan"))})
    missing = {k: v for k, v in weights.items() if k != "encoder.bias"}
    cases = {
        "nan": (nan, header(), "decoder.bias holds NaN or inf"),
        "missing tensor": (missing, header(), "expected encoder.weight"),
        "wrong shape": (dict(weights, **{"decoder.weight": torch.randn(8, 5)}), header(), "decoder.weight has shape"),
        "header sizes": (weights, header(hidden_size=9), "encoder.weight has shape"),
        "no header": (weights, {}, "no readable 'xlvlm_learned_steering' header"),
        "bad layer": (weights, header(steer_layer=3), "field 'steer_layer' is not a layer name"),
        "bad hidden": (weights, header(hidden="4"), "field 'hidden' is '4'"),
        "format": (weights, header(format=7), "format .7., this xlvlm reads 1"),
        "order": (weights, header(context_layer="final"), "context layer final comes after the steering layer 1"),
        "ints": (dict(weights, **{"encoder.bias": torch.ones(4, dtype=torch.int32)}), header(), "not a float tensor"),
    }
    _each_refused_in_one_line(LearnedSteering.load, cases, tmp_path)
    model.decoder_bias[0] = float("nan")  # changed after it was made: never written
    with pytest.raises(XlvlmError, match="not written: decoder.bias holds NaN or inf"):
        model.save(tmp_path / "mutated.safetensors")
    assert not (tmp_path / "mutated.safetensors").exists()
    with pytest.raises(XlvlmError, match="learned steering file not found"):
        LearnedSteering.load(tmp_path / "nothing.safetensors")


def test_project_out_removes_each_samples_own_component(vlm_of, samples):
    vlm = vlm_of("llava")
    g = torch.Generator().manual_seed(3)
    ids = [s["id"] for s in samples[:3]]
    p2s = PerSampleSteering({"1": torch.randn(3, vlm.hidden_size, generator=g)}, ids)
    units = p2s.vectors["1"] / p2s.vectors["1"].norm(dim=1, keepdim=True)
    with p2s.apply(vlm, operator="project-out"), record(vlm, ["1"]) as rec:
        generation = vlm.generate_batch(samples[:3], max_new_tokens=3)
    steered = rec.stacked("1")  # prefill and decode steps
    for i in range(3):
        assert (steered[i, generation.batch.offsets[i]:] @ units[i]).abs().max() < 1e-4
    # another sample's direction is not removed
    assert (steered[0, generation.batch.offsets[0]:] @ units[1]).abs().max() > 1e-2


def test_sweep_takes_per_sample_and_learned_steering(vlm_of, samples):
    from xlvlm.steer.run import sweep

    vlm = vlm_of("llava")
    ids = [s["id"] for s in samples[:4]]
    p2s = PerSampleSteering({"1": 3 * torch.randn(4, vlm.hidden_size, generator=torch.Generator().manual_seed(0))},
                            ids, {"method": "per-sample"})
    learned = _random_learned(vlm, 1, 2)
    learned.metadata["method"] = "learned"

    def changed(predictions, baseline):
        return {"changed": sum(p["prediction"] != b["prediction"] for p, b in zip(predictions, baseline))}

    rows = sweep(vlm, {"p2s": p2s, "l2s": learned}, samples[:4], alphas=[0, 2], scorer=changed, max_new_tokens=3,
                 batch_size=2, progress=False)
    assert [(r["method"], r["layer"], r["alpha"]) for r in rows] == [
        ("p2s", "1", 0.0), ("p2s", "1", 2.0), ("l2s", "2", 0.0), ("l2s", "2", 2.0)]
    assert rows[0]["changed"] == 0 and rows[2]["changed"] == 0 and rows[1]["changed"] + rows[3]["changed"] > 0
    small = LearnedSteering("0", "1", torch.randn(3, 4), torch.randn(3), torch.randn(4, 3), torch.randn(4))
    with pytest.raises(XlvlmError, match="have size 4 but the model"):
        sweep(vlm, {"small": small}, samples[:2], alphas=[1], scorer=changed, progress=False)


def test_learned_steering_behind_a_condition_steers_exactly_the_samples_it_lets_through(vlm_of, samples):
    from xlvlm.steer import Condition

    vlm = vlm_of("llava")
    model = _random_learned(vlm, 1, 2)
    direction = torch.randn(vlm.hidden_size, generator=torch.Generator().manual_seed(5))
    direction = direction / direction.norm()
    with record(vlm, ["0"]) as rec:
        plain = vlm.generate_batch(samples, max_new_tokens=3)
    last = torch.stack([rec.outputs["0"][0][i, -1] for i in range(len(samples))])  # left padded: last is real
    projections = last @ direction
    # the threshold halfway between the two middle projections: at a sample's own value (the
    # median) batched and single-sample numerics could fall on either side of it
    middle = projections.sort().values[len(samples) // 2 - 1:len(samples) // 2 + 1]
    gate = Condition("0", direction, float(middle.mean()))
    chosen = gate.decide(last)
    assert 0 < int(chosen.sum()) < len(samples)
    with model.apply(vlm, alpha=1.5):
        steered = vlm.generate_batch(samples, max_new_tokens=3).texts
    with model.apply(vlm, alpha=1.5, condition=gate):
        gated = vlm.generate_batch(samples, max_new_tokens=3).texts
        alone = [vlm.generate_batch([s], max_new_tokens=3).texts[0] for s in samples]
    assert gated == alone
    assert gated == [s if ok else p for s, p, ok in zip(steered, plain.texts, chosen.tolist())]
    assert any(s != p for s, p, ok in zip(steered, plain.texts, chosen.tolist()) if ok)  # the gate passes a real edit


def test_per_sample_train_extracts_both_lists_and_pairs_them_by_id(vlm_of, samples):
    vlm = vlm_of("llava")
    framed = {"no": [dict(s, prompt=s["prompt"] + " no") for s in samples[:4]],
              "yes": [dict(s, prompt=s["prompt"] + " yes") for s in samples[:4]]}
    p2s = PerSampleSteering.train(vlm, framed["yes"][::-1], framed["no"], layers=[1, 2])  # by id, not by order
    stores = [xlvlm.extract(vlm, framed[k], layers=[1, 2], progress=False) for k in ("no", "yes")]
    assert p2s.ids == [s["id"] for s in samples[:4]] and p2s.layers == ["1", "2"]
    torch.testing.assert_close(p2s.vectors["1"], PerSampleSteering.from_stores(*stores, [1]).vectors["1"])
    for i in range(4):  # the reference: the last prompt token's state, by hand at batch 1
        with record(vlm, ["2"]) as rec:
            for k in ("no", "yes"):
                vlm.forward(vlm.encode([framed[k][i]]))
        no, yes = rec.outputs["2"]
        torch.testing.assert_close(p2s.vectors["2"][i], yes[0, -1] - no[0, -1], rtol=1e-4, atol=1e-4)
    assert "source" not in p2s.metadata
