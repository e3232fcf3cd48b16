import json

import pytest
import torch

import xlvlm
from xlvlm.cli import main
from xlvlm.errors import XlvlmError
from xlvlm.shift import analyse_shift, matched_features, shift_statistics
from xlvlm.shift.analysis import recovery


def _planted(n_per=30, k=4, d=16, seed=0):
    """Clusters around k directions; fine-tuned = original + a per-cluster shift (no noise)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * 4
    shifts = torch.randn(k, d, generator=g)
    labels = torch.arange(k).repeat_interleave(n_per)
    X_o = centres[labels] * (1 + 0.2 * torch.rand(len(labels), 1, generator=g)) + 0.3 * torch.randn(len(labels), d, generator=g)
    X_f = X_o + shifts[labels]
    return X_o, X_f, labels, shifts


def _stores(tmp_path, X_o, X_f, order=None, absent_o=(), absent_f=()):
    n = X_o.shape[0]
    ids = [f"q{i}" for i in range(n)]
    order = list(range(n)) if order is None else order
    o = xlvlm.FeatureStore.from_tensors({"1": X_o}, [{"id": i, "present": i not in absent_o} for i in ids],
                                        path=tmp_path / "o")
    f = xlvlm.FeatureStore.from_tensors({"1": X_f[order]},
                                        [{"id": ids[j], "present": ids[j] not in absent_f} for j in order],
                                        path=tmp_path / "f")
    return o, f


@pytest.mark.parametrize("method", ["kmeans", "snmf"])
def test_planted_shift_vectors_are_recovered(method, tmp_path):
    X_o, X_f, labels, shifts = _planted()
    o, f = _stores(tmp_path, X_o, X_f)
    res = analyse_shift(o, f, layer=1, n_concepts=4, method=method)
    for k in range(4):
        members = labels[res.assignment == k]
        assert members.numel() > 0 and (members == members[0]).all()  # one planted cluster per concept
        torch.testing.assert_close(res.shift_vectors[k], shifts[members[0]], rtol=0, atol=1e-5)
    torch.testing.assert_close(res.shifted_concepts, res.original_concepts + res.shift_vectors)
    assert res.summary()["share_closer_by_cosine"] >= 0.75


def test_sample_matching_with_different_orders_and_present_masks(tmp_path):
    X_o, X_f, _, _ = _planted(n_per=5, k=2, d=4)
    order = list(range(9, -1, -1))
    o, f = _stores(tmp_path, X_o, X_f, order=order, absent_o={"q1"}, absent_f={"q2", "q7"})
    a, b, ids = matched_features(o, f, "1")
    assert ids == [f"q{i}" for i in range(10) if i not in (1, 2, 7)]
    torch.testing.assert_close(a, X_o[[int(i[1:]) for i in ids]])
    torch.testing.assert_close(b, X_f[[int(i[1:]) for i in ids]])


def test_statistics_and_recovery_by_hand():
    d = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    stats = shift_statistics(d)
    # pairwise cos: (0, 1/sqrt2, 1/sqrt2) -> mean sqrt2/3; mean shift (2/3, 2/3)
    assert stats["mean_pairwise_cosine"] == pytest.approx(2 ** 0.5 / 3)
    assert stats["magnitude"] == pytest.approx((8 / 9) ** 0.5)
    assert stats["mean_cosine_to_mean"] == pytest.approx((2 / 2 ** 0.5 + 1) / 3)
    assert stats["mean_pairwise_dot"] == pytest.approx((0 + 1 + 1) / 3)
    assert stats["mean_dot_to_mean"] == pytest.approx((2 / 3 + 2 / 3 + 4 / 3) / 3)
    rec = recovery(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 2.0]]))[0]
    assert rec["cos_original"] == pytest.approx(0.0) and rec["cos_shifted"] == pytest.approx(2 ** -0.5)
    assert rec["cos_improvement_normalised"] == pytest.approx(2 ** -0.5)
    assert rec["l2_original"] == pytest.approx(5 ** 0.5) and rec["l2_shifted"] == pytest.approx(2 ** 0.5)
    assert rec["l2_improvement_normalised"] == pytest.approx(1 - (2 / 5) ** 0.5)


def test_shift_errors(tmp_path):
    X = torch.randn(6, 4)
    o = xlvlm.FeatureStore.from_tensors({"1": X}, [{"id": f"a{i}"} for i in range(6)], path=tmp_path / "o")
    f = xlvlm.FeatureStore.from_tensors({"1": X}, [{"id": f"b{i}"} for i in range(6)], path=tmp_path / "f")
    with pytest.raises(XlvlmError, match="share no sample"):
        analyse_shift(o, f, layer=1, n_concepts=2)
    with pytest.raises(XlvlmError, match="not in store"):
        analyse_shift(o, f, layer=3, n_concepts=2)


def test_shift_command_writes_results_and_figures(tmp_path, samples, capsys):
    X_o, X_f, _, _ = _planted(n_per=4, k=2, d=8)
    rows = [dict(samples[i % len(samples)], id=f"q{i}") for i in range(8)]
    xlvlm.FeatureStore.from_tensors({"1": X_o}, rows, path=tmp_path / "o")
    xlvlm.FeatureStore.from_tensors({"1": X_f}, rows, path=tmp_path / "f")
    code = main(["shift", "--original", str(tmp_path / "o"), "--finetuned", str(tmp_path / "f"), "--layer", "1",
                 "--n-concepts", "2", "--method", "kmeans", "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert len(result["concepts"]) == 2 and "stats" in result["concepts"][0]
    for name in ("shift_grid.png", "shift_recovery.png", "shift_coherence.png", "shift.safetensors"):
        assert (tmp_path / "out" / name).stat().st_size > 500


def test_shift_command_grounds_words_in_the_given_word_list(tmp_path, tiny_dir, vlm_of, samples, capsys):
    vlm = vlm_of("llava")
    rows = [dict(samples[i % len(samples)], id=f"q{i}") for i in range(8)]
    g = torch.Generator().manual_seed(0)
    X_o = torch.randn(8, vlm.hidden_size, generator=g)
    xlvlm.FeatureStore.from_tensors({"1": X_o}, rows, path=tmp_path / "o")
    xlvlm.FeatureStore.from_tensors({"1": X_o + 1.0}, rows, path=tmp_path / "f")
    allowed = sorted(w for w in vlm.tokenizer.get_vocab() if w.isalpha())[:5]
    assert len(allowed) == 5
    (tmp_path / "words.txt").write_text("\n".join(allowed) + "\n")
    code = main(["shift", "--original", str(tmp_path / "o"), "--finetuned", str(tmp_path / "f"), "--layer", "1",
                 "--n-concepts", "2", "--method", "kmeans", "--model", str(tiny_dir("llava")),
                 "--words", str(tmp_path / "words.txt"), "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    concepts = json.loads((tmp_path / "out" / "result.json").read_text())["concepts"]
    grounded = {w for c in concepts for key in ("words_shift", "words_original", "words_shifted") for w in c[key]}
    assert grounded and grounded <= set(allowed)
    code = main(["shift", "--original", str(tmp_path / "o"), "--finetuned", str(tmp_path / "f"), "--layer", "1",
                 "--method", "kmeans", "--n-concepts", "2", "--words", str(tmp_path / "none.txt"),
                 "--model", str(tiny_dir("llava")), "--out", str(tmp_path / "out2")])
    assert code != 0 and "none.txt" in capsys.readouterr().err


def test_cosine_improvement_both_normalisations_by_hand():
    # cos(original, ft) = 1/sqrt5, cos(shifted, ft) = 3/sqrt10.
    rec = recovery(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 2.0]]))[0]
    c0, c1 = 5 ** -0.5, 3 / 10 ** 0.5
    assert rec["cos_improvement"] == pytest.approx(c1 - c0)
    assert rec["cos_improvement_normalised"] == pytest.approx((c1 - c0) / (1 - c0))  # xlvlm: share of the gap
    assert rec["cos_improvement_relative"] == pytest.approx((c1 - c0) / c0)  # research: over cos0
    # cos0 = 0: the research normalisation is undefined.
    assert recovery(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 2.0]]))[0][
        "cos_improvement_relative"] is None


def test_intersections_as_fractions_and_counts():
    from xlvlm.shift.analysis import _intersection, _intersection_count

    a, b = ["red", "blue", "sky"], ["blue", "sky", "sea", "boat"]
    assert _intersection(a, b) == pytest.approx(2 / 3)  # xlvlm: |A ∩ B| / min(|A|, |B|)
    assert _intersection_count(a, b) == 2  # research: |A ∩ B|
    assert _intersection([], b) is None and _intersection_count([], b) == 0


def test_mas_ranked_by_activation_as_the_research_code(tmp_path):
    X_o, X_f, _, _ = _planted(n_per=10, k=3, d=8)
    o, f = _stores(tmp_path, X_o, X_f)
    by_cos = analyse_shift(o, f, layer=1, n_concepts=3, method="kmeans", top_k_samples=5)
    res = analyse_shift(o, f, layer=1, n_concepts=3, method="kmeans", top_k_samples=5, mas_by="activation")
    # k-means codes are 1/(1 + distance): the top-activating samples are the nearest ones.
    nearest = torch.cdist(X_o, res.original.components).argsort(dim=0)[:5].T
    assert [sorted(m) for m in res.mas["original"]] == [sorted(m) for m in nearest.tolist()]
    shifted_nearest = torch.cdist(X_f, res.shifted_concepts).argsort(dim=0)[:5].T
    assert [sorted(m) for m in res.mas["shifted"]] == [sorted(m) for m in shifted_nearest.tolist()]
    ft_nearest = torch.cdist(X_f, res.finetuned.components).argsort(dim=0)[:5].T
    assert [sorted(ft_nearest[m].tolist()) for m in res.match.tolist()] == [sorted(m) for m in res.mas["finetuned"]]
    row = res.recovery[0]
    assert row["mas_original_vs_finetuned_count"] == len(set(res.mas["original"][0]) & set(res.mas["finetuned"][0]))
    assert res.settings["mas_by"] == "activation" and by_cos.settings["mas_by"] == "cosine"
    with pytest.raises(XlvlmError, match="MAS ranking"):
        analyse_shift(o, f, layer=1, n_concepts=3, method="kmeans", mas_by="distance")


def test_research_shift_options_by_hand(tmp_path):
    """aggregate_sides: median(fine-tuned rows) - median(original rows), not the median of the
    per-sample differences; concept_scale "learnt": the components as the method returns them."""
    X_o = torch.tensor([[1.0, 0.0], [2.0, 0.0], [10.0, 0.0], [0.0, 1.0], [0.0, 2.0], [0.0, 3.0]])
    X_f = X_o + torch.tensor([[5.0, 0.0], [0.0, 0.0], [-9.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    o, f = _stores(tmp_path, X_o, X_f)
    common = dict(n_concepts=2, method="kmeans", assignment="cosine", aggregate_by="median")
    ours = analyse_shift(o, f, layer=1, **common)
    research = analyse_shift(o, f, layer=1, aggregate_sides=True, concept_scale="learnt", **common)
    first = int(ours.assignment[0])  # the concept of the rows along the first axis
    # per-sample differences along x: 5, 0, -9 -> (lower) median 0; sides: median(6, 2, 1) - median(1, 2, 10) = 0
    assert ours.shift_vectors[first].tolist() == [0.0, 0.0]
    second = 1 - first  # rows along y: differences 0, 1, 2 -> 1; sides: median(1, 3, 5) - median(1, 2, 3) = 1
    assert ours.shift_vectors[second].tolist() == research.shift_vectors[second].tolist() == [0.0, 1.0]
    X_o2 = X_o.clone()
    X_o2[0, 0] = 3.0  # differences 2, 0, -9 -> 0; sides: median(8, 2, 1) - median(3, 2, 10) = 2 - 3 = -1
    o2, f2 = _stores(tmp_path / "b", X_o2, X_o2 + (X_f - X_o))
    assert analyse_shift(o2, f2, layer=1, **common).shift_vectors[first].tolist() == [0.0, 0.0]
    sides = analyse_shift(o2, f2, layer=1, aggregate_sides=True, **common)
    assert sides.shift_vectors[first].tolist() == [-1.0, 0.0]
    assert sides.settings["aggregate_sides"] is True and "aggregate_sides" not in ours.settings
    # learnt scale: k-means centres are already at the data's scale; the original concepts are the
    # centres themselves, unscaled (at the data's scale they are centre directions x mean projection)
    torch.testing.assert_close(research.original_concepts, research.original.components.float())
    assert research.settings["concept_scale"] == "learnt"
    with pytest.raises(XlvlmError, match="concept scale"):
        analyse_shift(o, f, layer=1, concept_scale="raw", **common)
