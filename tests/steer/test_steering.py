import pytest
import torch

import xlvlm
from xlvlm.errors import XlvlmError
from xlvlm.hooks import record
from xlvlm.steer import Condition, SteeringVector


def _logits(vlm, batch):
    with torch.inference_mode():
        return vlm.model(**batch.inputs, use_cache=False).logits


def _hooks(model):
    """Every hook id on the model (transformers installs a few of its own on first use)."""
    return {(name, kind, key) for name, m in model.named_modules()
            for kind, hooks in (("f", m._forward_hooks), ("p", m._forward_pre_hooks)) for key in hooks}


def _random_vector(vlm, layers=("1",), scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return SteeringVector({k: scale * torch.randn(vlm.hidden_size, generator=g) for k in layers})


def test_zero_vector_changes_nothing_and_exit_restores_exactly(vlm_of, samples):
    vlm = vlm_of("llava")
    batch = vlm.encode(samples[:3])
    base = _logits(vlm, batch)
    hooks_before = _hooks(vlm.model)
    zero = SteeringVector({"1": torch.zeros(vlm.hidden_size), "final": torch.zeros(vlm.hidden_size)})
    with zero.apply(vlm, alpha=5.0):
        assert torch.equal(_logits(vlm, batch), base)
    with _random_vector(vlm).apply(vlm, alpha=1.0):
        assert not torch.allclose(_logits(vlm, batch), base)
    assert torch.equal(_logits(vlm, batch), base)
    with pytest.raises(RuntimeError):
        with _random_vector(vlm).apply(vlm):
            raise RuntimeError("boom")
    assert torch.equal(_logits(vlm, batch), base)
    assert _hooks(vlm.model) == hooks_before


@pytest.mark.parametrize("positions", ["all", "generated", "from-last-prompt", 5])
def test_batch_8_equals_batch_1_under_steering(positions, vlm_of, samples):
    vlm = vlm_of("llava")
    sv = _random_vector(vlm, layers=("0", "2"), scale=2.0)
    with sv.apply(vlm, alpha=1.5, positions=positions):
        together = vlm.generate_batch(samples, max_new_tokens=4)
        with record(vlm, ["3"]) as rec:
            together_states = vlm.generate_batch(samples, max_new_tokens=4)
        both = rec.stacked("3")
        for i, sample in enumerate(samples):
            with record(vlm, ["3"]) as rec1:
                alone = vlm.generate_batch([sample], max_new_tokens=4)
            assert alone.texts == [together.texts[i]]
            offset = together_states.batch.offsets[i]
            alone_states = rec1.stacked("3")[0]
            n = alone_states.shape[0]
            torch.testing.assert_close(both[i, offset:offset + n], alone_states, rtol=1e-4, atol=1e-4)


def test_generated_only_leaves_prompt_states_untouched(vlm_of, samples):
    vlm = vlm_of("llava")
    sv = _random_vector(vlm, layers=("1",), scale=5.0)
    with record(vlm, ["2"]) as plain:
        gen = vlm.generate_batch(samples[:4], max_new_tokens=3)
    width = gen.batch.input_ids.shape[1]
    with sv.apply(vlm, positions="generated"), record(vlm, ["2"]) as steered:
        vlm.generate_batch(samples[:4], max_new_tokens=3)
    assert torch.equal(steered.outputs["2"][0], plain.outputs["2"][0])  # prefill: the whole prompt
    assert steered.outputs["2"][0].shape[1] == width
    assert not torch.allclose(steered.stacked("2")[:, width:], plain.stacked("2")[:, width:])


def test_prompt_index_rule_edits_exactly_from_that_index(vlm_of, samples):
    vlm = vlm_of("llava")
    sv = _random_vector(vlm, layers=("1",))
    batch = vlm.encode(samples[:2], padding_side="left")
    with record(vlm, ["1"]) as plain:
        vlm.forward(batch)
    with sv.apply(vlm, positions=7), record(vlm, ["1"]) as steered:
        vlm.forward(batch)
    diff = (steered.stacked("1") - plain.stacked("1")).norm(dim=-1)
    for b in range(2):
        off = batch.offsets[b]
        assert torch.all(diff[b, :off + 7] == 0)
        torch.testing.assert_close(steered.stacked("1")[b, off + 7:] - plain.stacked("1")[b, off + 7:],
                                   sv.layer_activations["1"].expand(diff.shape[1] - off - 7, -1), rtol=0, atol=1e-5)


def test_project_out_removes_the_component(vlm_of, samples):
    vlm = vlm_of("llava")
    sv = _random_vector(vlm, layers=("2",))
    unit = sv.layer_activations["2"] / sv.layer_activations["2"].norm()
    batch = vlm.encode(samples[:2])
    with sv.apply(vlm, operator="project-out"), record(vlm, ["2"]) as rec:
        vlm.forward(batch)
    assert (rec.stacked("2") @ unit).abs().max() < 1e-4


def _store(path, features, ids):
    return xlvlm.FeatureStore.from_tensors({"1": features}, [{"id": i} for i in ids], path=path)


def test_methods_on_planted_stores(tmp_path):
    g = torch.Generator().manual_seed(0)
    source = torch.randn(20, 6, generator=g)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 3.0])
    target = source + shift + 0.01 * torch.randn(20, 6, generator=g)
    ids = [f"x{i}" for i in range(20)]
    s = _store(tmp_path / "s", source, ids)
    # the target store lists the samples in another order, and one is missing
    order = list(range(19, 0, -1))
    t = _store(tmp_path / "t", target[order], [ids[i] for i in order])
    md = SteeringVector.mean_difference(s, t, [1]).layer_activations["1"]
    torch.testing.assert_close(md, target[1:].mean(0) - source.mean(0))
    ms = SteeringVector.from_stores(s, t, [1], "mean-of-shifts").layer_activations["1"]
    torch.testing.assert_close(ms, (target[1:] - source[1:]).mean(0))
    pc = SteeringVector.from_stores(s, t, [1], "pca").layer_activations["1"]
    assert torch.nn.functional.cosine_similarity(pc, shift, dim=0) > 0.99
    sv = SteeringVector.compute(s, t, [1], method="mean-diff")
    path = sv.save(tmp_path / "v.safetensors")
    back = SteeringVector.load(path)
    assert torch.equal(back.layer_activations["1"], sv.layer_activations["1"].float())
    assert back.metadata["method"] == "mean-diff"
    combo = 2 * sv - sv
    torch.testing.assert_close(combo.layer_activations["1"], sv.layer_activations["1"])
    assert abs(sv.normalized().norms()["1"] - 1) < 1e-6


def test_concept_vectors_and_errors(vlm_of, tmp_path):
    components = torch.eye(4, 6)
    sv = SteeringVector.from_concepts(components, 0, 2, layer=1)
    assert torch.equal(sv.layer_activations["1"], components[2] - components[0])
    with pytest.raises(XlvlmError, match="out of range"):
        SteeringVector.from_concepts(components, 0, 9, layer=1)
    vlm = vlm_of("llava")
    with pytest.raises(XlvlmError, match="hidden size"):
        with sv.apply(vlm):
            pass
    with pytest.raises(XlvlmError, match="not found"):
        SteeringVector.load(tmp_path / "none.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(XlvlmError, match="not a readable"):
        SteeringVector.load(tmp_path / "junk.safetensors")


def test_condition_learns_a_threshold_and_gates_samples(vlm_of, samples):
    pos = torch.randn(30, 5) + torch.tensor([3.0, 0, 0, 0, 0])
    neg = torch.randn(30, 5) - torch.tensor([3.0, 0, 0, 0, 0])
    cond = Condition.learn(pos, neg, layer=0)
    assert cond.decide(pos).float().mean() > 0.95 and cond.decide(neg).float().mean() < 0.05

    vlm = vlm_of("llava")
    sv = _random_vector(vlm, layers=("2",), scale=4.0)
    batch = vlm.encode(samples[:4], padding_side="left")
    with record(vlm, ["0"]) as rec:
        vlm.forward(batch)
    last = rec.stacked("0")[:, -1]
    # a condition that steers exactly samples 0 and 2
    cond = Condition.learn(last[[0, 2]], last[[1, 3]], layer=0)
    assert cond.decide(last).tolist() == [True, False, True, False]
    base = vlm.generate_batch(samples[:4], max_new_tokens=4).texts
    with sv.apply(vlm, alpha=3.0):
        always = vlm.generate_batch(samples[:4], max_new_tokens=4).texts
    with sv.apply(vlm, alpha=3.0, condition=cond):
        gated = vlm.generate_batch(samples[:4], max_new_tokens=4).texts
    assert gated == [always[0], base[1], always[2], base[3]]
    late = Condition(layer="3", direction=cond.direction, threshold=cond.threshold)
    with pytest.raises(XlvlmError, match="condition layer"):
        with sv.apply(vlm, condition=late):
            pass


def test_lda_condition_separates_what_the_mean_difference_cannot():
    # Classes differ by 1 along a quiet axis (std 0.1) but 2 along a loud one (std 10), in 10
    # dimensions: the difference of means points mostly along the loud axis, where they overlap.
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([10.0] + [0.1] * 9)
    shift = torch.tensor([2.0, 1.0] + [0.0] * 8)

    def draw(n, moved):
        return torch.randn(n, 10, generator=g) * scale + (shift if moved else 0)

    pos, neg = draw(400, True), draw(400, False)
    test_pos, test_neg = draw(400, True), draw(400, False)

    def accuracy(cond):
        return (cond.decide(test_pos).float().mean() + (~cond.decide(test_neg)).float().mean()) / 2

    assert accuracy(Condition.learn(pos, neg, 0, method="lda")) > 0.9
    assert accuracy(Condition.learn(pos, neg, 0, method="mean-diff")) < 0.75
    with pytest.raises(XlvlmError, match="unknown condition method"):
        Condition.learn(pos, neg, 0, method="svm")


def _planted_concept_stores(tmp_path, same=False):
    """Source = clean cluster A (10 rows) + three noise clusters; target = clean cluster B (12
    rows) + the same noise clusters (as many source as target rows in each)."""
    g = torch.Generator().manual_seed(0)
    centres = 10 * torch.randn(5, 8, generator=g)

    def blob(c, n):
        return centres[c] + 0.3 * torch.randn(n, 8, generator=g)

    a, b = blob(0, 10), blob(1, 12)
    source = torch.cat([a, blob(2, 4), blob(3, 4), blob(4, 4)])
    target = source.clone() if same else torch.cat([b, blob(2, 4), blob(3, 4), blob(4, 4)])
    s = _store(tmp_path / "s", source, [f"s{i}" for i in range(len(source))])
    t = _store(tmp_path / "t", target, [f"t{i}" for i in range(len(target))])
    return s, t, a, b, torch.cat([source, target])


def test_concept_method_from_stores_finds_the_planted_clusters(tmp_path):
    from xlvlm.concepts import learn_concepts

    s, t, a, b, union = _planted_concept_stores(tmp_path)
    sv = SteeringVector.compute(s, t, [1], method="concept", n_concepts=5)
    torch.testing.assert_close(sv.layer_activations["1"], b.mean(0) - a.mean(0), rtol=0, atol=1e-4)
    meta = sv.metadata
    assert meta["method"] == "concept" and meta["concept_method"] == "kmeans" and meta["n_concepts"] == 5
    i, j = meta["concepts"]["1"]
    assert meta["purity"]["1"] == [1.0, 1.0] and meta["concept_sizes"]["1"] == [10, 12]
    # the named concepts are the planted clusters: the same dictionary has them as centroids
    cd = learn_concepts(union, method="kmeans", n_concepts=5, seed=0)
    torch.testing.assert_close(cd.components[i], a.mean(0), rtol=0, atol=1e-4)
    torch.testing.assert_close(cd.components[j], b.mean(0), rtol=0, atol=1e-4)
    # the metadata survives a save and load
    assert SteeringVector.load(sv.save(tmp_path / "c.safetensors")).metadata["concepts"] == {"1": [i, j]}
    # an additive dictionary (semi-NMF) is rescaled to the data's scale: close to the same vector
    snmf = SteeringVector.from_store_concepts(s, t, [1], n_concepts=5, concept_method="snmf")
    ref = b.mean(0) - a.mean(0)
    assert torch.nn.functional.cosine_similarity(snmf.layer_activations["1"], ref, dim=0) > 0.99
    assert 0.8 < snmf.norms()["1"] / float(ref.norm()) < 1.25


def test_concept_method_errors_when_concepts_do_not_separate(tmp_path):
    s, t, *_ = _planted_concept_stores(tmp_path, same=True)
    with pytest.raises(XlvlmError, match="do not separate") as info:
        SteeringVector.compute(s, t, [1], method="concept", n_concepts=5)
    assert len(str(info.value).splitlines()) == 1
    with pytest.raises(XlvlmError, match="takes no options"):
        SteeringVector.compute(s, t, [1], method="mean-diff", n_concepts=5)
    with pytest.raises(XlvlmError, match="unknown steering method"):
        SteeringVector.compute(s, t, [1], method="lda")


def test_singular_lda_condition_is_one_line_and_the_cli_takes_its_options(tmp_path, capsys):
    from xlvlm.cli import main

    pos, neg = torch.randn(3, 8), torch.randn(3, 8)
    with pytest.raises(XlvlmError, match="singular.*raise shrinkage"):
        Condition.learn(pos, neg, 0, shrinkage=0.0)
    with pytest.raises(XlvlmError, match="between 0 and 1"):
        Condition.learn(pos, neg, 0, shrinkage=2.0)
    assert Condition.learn(pos, neg, 0, shrinkage=0.5).decide(pos).dtype == torch.bool
    rows = [{"id": f"s{i}", "image": "x.png", "prompt": "p"} for i in range(3)]
    xlvlm.FeatureStore.from_tensors({"0": pos + 5}, rows, path=tmp_path / "pos")
    xlvlm.FeatureStore.from_tensors({"0": neg}, rows, path=tmp_path / "neg")
    for extra in (["--method", "mean-diff"], ["--shrinkage", "0.5"]):
        assert main(["steer", "condition", "--positive", str(tmp_path / "pos"), "--negative", str(tmp_path / "neg"),
                     "--layer", "0", *extra, "--out", str(tmp_path / "c.safetensors"), "--overwrite"]) == 0
        assert "100.0% of --positive steered, 100.0% of --negative left alone" in capsys.readouterr().out
    assert main(["steer", "condition", "--positive", str(tmp_path / "pos"), "--negative", str(tmp_path / "neg"),
                 "--layer", "0", "--shrinkage", "0", "--out", str(tmp_path / "c.safetensors"), "--overwrite"]) == 2
    assert "singular" in capsys.readouterr().err


def test_concept_pairs_learnt_on_the_source_only_as_the_research_code(tmp_path):
    """Four planted source clusters: k-means on the source alone has their means as centroids,
    and every ordered pair (i, j) is V_j - V_i (the research code stores V_i - V_j under i_to_j)."""
    from xlvlm.concepts import learn_concepts

    g = torch.Generator().manual_seed(1)
    centres = 10 * torch.randn(4, 8, generator=g)
    rows = torch.cat([centres[c] + 0.1 * torch.randn(6, 8, generator=g) for c in range(4)])
    s = _store(tmp_path / "s", rows, [f"s{i}" for i in range(len(rows))])
    pairs = SteeringVector.concept_pairs(s, 1, n_concepts=4)
    assert sorted(pairs) == [(i, j) for i in range(4) for j in range(4) if i != j]
    cd = learn_concepts(rows, method="kmeans", n_concepts=4, seed=0)
    means = torch.stack([rows[6 * c:6 * c + 6].mean(0) for c in range(4)])
    planted = torch.cdist(cd.components, means).argmin(1)  # the planted cluster of each concept
    assert sorted(planted.tolist()) == [0, 1, 2, 3]
    for (i, j), sv in pairs.items():
        expected = means[planted[j]] - means[planted[i]]
        torch.testing.assert_close(sv.layer_activations["1"], expected, rtol=0, atol=1e-4)
        assert sv.metadata["concepts"] == [i, j] and sv.metadata["concepts_learnt_on"] == "source"


def test_cli_all_pairs_writes_one_vector_per_ordered_pair(tmp_path, capsys):
    from xlvlm.cli import main

    rows = torch.cat([torch.full((5, 4), float(c)) + 0.01 * torch.randn(5, 4) for c in range(3)])
    s = _store(tmp_path / "s", rows, [f"s{i}" for i in range(len(rows))])
    assert main(["steer", "compute", "--source", str(s.path), "--layer", "1", "--method", "concept", "--all-pairs",
                 "--n-concepts", "3", "--out", str(tmp_path / "pairs")]) == 0
    written = sorted(p.name for p in (tmp_path / "pairs").iterdir())
    assert written == sorted(f"concept_{i}_to_{j}.safetensors" for i in range(3) for j in range(3) if i != j)
    assert main(["steer", "compute", "--source", str(s.path), "--layer", "1", "--all-pairs",
                 "--out", str(tmp_path / "x")]) == 2
    assert "--all-pairs needs --method concept" in capsys.readouterr().err
