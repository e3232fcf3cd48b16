"""The concept method in the layer x alpha x method sweep, from Python and from the CLI."""

import json

import pytest
import torch

import xlvlm
from xlvlm.cli import main
from xlvlm.errors import XlvlmError
from xlvlm.steer.run import sweep_stores

METHODS = ["mean-diff", "mean-of-shifts", "pca", "concept"]


def _planted_stores(tmp_path, hidden, n=8):
    """Paired source/target stores at layers 1 and 2: source rows near one point, target rows
    near another, so every method (paired ones included) has a vector."""
    g = torch.Generator().manual_seed(0)
    ids = [{"id": f"p{i}"} for i in range(n)]
    source, target = {}, {}
    for layer in ("1", "2"):
        a, b = torch.randn(2, hidden, generator=g)
        source[layer] = a + 0.05 * torch.randn(n, hidden, generator=g)
        target[layer] = b + 0.05 * torch.randn(n, hidden, generator=g)
    return (xlvlm.FeatureStore.from_tensors(source, ids, num_layers=4, path=tmp_path / "src"),
            xlvlm.FeatureStore.from_tensors(target, ids, num_layers=4, path=tmp_path / "tgt"))


def _eval_samples(samples):
    return ([dict(s, answer="yes", answer_type="yes/no") for s in samples[:3]]
            + [dict(s, id=s["id"] + "c", answer="red", answer_type="color") for s in samples[3:5]])


def test_sweep_runs_every_method_including_concept(vlm_of, samples, tmp_path):
    vlm = vlm_of("llava")
    source, target = _planted_stores(tmp_path, vlm.hidden_size)
    rows = sweep_stores(vlm, source, target, _eval_samples(samples), layers=[1, 2], alphas=[0, 2], methods=METHODS,
                        max_new_tokens=2, batch_size=8, out=tmp_path / "sw", progress=False, n_concepts=3)
    assert len(rows) == 4 * 2 * 2
    assert {(r["method"], r["layer"], r["alpha"]) for r in rows} == \
        {(m, layer, a) for m in METHODS for layer in ("1", "2") for a in (0.0, 2.0)}
    concept = [r for r in rows if r["method"] == "concept"]
    assert all(r["purity"] == [1.0, 1.0] and len(r["concepts"]) == 2 for r in concept)
    assert all(r["side_unchanged"] == 1.0 for r in rows if r["alpha"] == 0)
    written = json.loads((tmp_path / "sw" / "result.json").read_text())
    assert len(written["rows"]) == 16
    assert (tmp_path / "sw" / "pred_concept_L2_a2.jsonl").is_file()
    with pytest.raises(XlvlmError, match="unknown steering method"):
        sweep_stores(vlm, source, target, _eval_samples(samples), layers=[1], alphas=[1], methods=["lda"],
                     progress=False)
    # vectors that cannot separate (a store against itself) fail before any generation
    with pytest.raises(XlvlmError, match="do not (separate|differ)"):
        sweep_stores(vlm, source, source, _eval_samples(samples), layers=[1], alphas=[1],
                     methods=["mean-diff", "concept"],
                     out=tmp_path / "bad", progress=False, n_concepts=2)
    assert not (tmp_path / "bad").exists()


def test_cli_concept_compute_and_sweep(tiny_dir, samples, tmp_path, capsys):
    source, target = _planted_stores(tmp_path, xlvlm.load_vlm(tiny_dir("llava")).hidden_size)
    out = tmp_path / "v.safetensors"
    assert main(["steer", "compute", "--source", str(source.path), "--target", str(target.path), "--layer", "1,2",
                 "--method", "concept", "--n-concepts", "2", "--out", str(out)]) == 0
    from xlvlm.steer import SteeringVector

    sv = SteeringVector.load(out)
    assert sv.layers == ["1", "2"] and sv.metadata["n_concepts"] == 2 and set(sv.metadata["concepts"]) == {"1", "2"}
    for layer in ("1", "2"):
        expected = target.features(layer).mean(0) - source.features(layer).mean(0)
        torch.testing.assert_close(sv.layer_activations[layer], expected, rtol=0, atol=1e-4)
    # --from/--to without --concepts is refused in one line
    capsys.readouterr()
    assert main(["steer", "compute", "--source", str(source.path), "--target", str(target.path), "--layer", "1",
                 "--method", "concept", "--from", "0", "--to", "1", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "--concepts" in capsys.readouterr().err
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(s) + "\n" for s in _eval_samples(samples)))
    assert main(["steer", "sweep", "--model", str(tiny_dir("llava")), "--data", str(data), "--source", str(source.path),
                 "--target", str(target.path), "--layers", "1", "--alphas", "0,2", "--methods", "mean-diff,concept",
                 "--n-concepts", "2", "--max-new-tokens", "2", "--quiet", "--out", str(tmp_path / "sw")]) == 0
    rows = json.loads((tmp_path / "sw" / "result.json").read_text())["rows"]
    assert [(r["method"], r["alpha"]) for r in rows] == [("mean-diff", 0), ("mean-diff", 2), ("concept", 0),
                                                         ("concept", 2)]


def test_sweep_takes_a_dict_of_vectors_and_a_scorer(vlm_of, samples, tmp_path):
    from xlvlm.steer import SteeringVector
    from xlvlm.steer.run import AnswerShift, sweep

    vlm = vlm_of("llava")
    source, target = _planted_stores(tmp_path, vlm.hidden_size)
    vectors = {"md": SteeringVector.mean_difference(source, target, [1]),
               "random": SteeringVector({"2": torch.randn(vlm.hidden_size, generator=torch.Generator().manual_seed(0))},
                                         {"method": "random"})}
    seen = []

    def changed(predictions, baseline):
        seen.append(len(predictions))
        return {"changed": sum(p["prediction"] != b["prediction"] for p, b in zip(predictions, baseline))}

    evaluation = _eval_samples(samples)
    rows = sweep(vlm, vectors, evaluation, alphas=[0, 50], scorer=changed, max_new_tokens=2, out=tmp_path / "sw",
                 progress=False)
    assert [(r["method"], r["layer"], r["alpha"]) for r in rows] == \
        [("md", "1", 0.0), ("md", "1", 50.0), ("random", "2", 0.0), ("random", "2", 50.0)]
    assert seen == [len(evaluation)] * 4
    assert rows[0]["changed"] == rows[2]["changed"] == 0  # alpha 0 is the baseline
    written = json.loads((tmp_path / "sw" / "result.json").read_text())
    assert written["stage"] == "sweep" and written["rows"] == rows and "source" not in written
    # the report renders a sweep of the caller's scorer: its own fields, no "None" -> "None"
    from xlvlm.report import build_report

    page = build_report(tmp_path / "sw").read_text()
    assert "caller" in page and ">changed<" in page and "None" not in page
    assert (tmp_path / "sw" / "pred_random_L2_a50.jsonl").is_file()
    # the command line's scorer, and its sweep from stores, give the same rows
    stores = sweep(vlm, {"mean-diff": vectors["md"]}, evaluation, alphas=[2], scorer=AnswerShift("yes", "no"),
                   max_new_tokens=2, progress=False)
    from xlvlm.steer.run import sweep_stores

    assert stores == sweep_stores(vlm, source, target, evaluation, layers=[1], alphas=[2], max_new_tokens=2,
                                  progress=False)
    with pytest.raises(XlvlmError, match="no vectors"):
        sweep(vlm, {}, evaluation, alphas=[1])


def test_sweep_names_rows_and_files_by_the_dict_keys(vlm_of, samples, tmp_path):
    """Two entries made the same way (one vector, raw and unit norm) are two rows and two files."""
    from xlvlm.steer import SteeringVector
    from xlvlm.steer.run import sweep

    vlm = vlm_of("llava")
    source, target = _planted_stores(tmp_path, vlm.hidden_size)
    sv = SteeringVector.mean_difference(source, target, [1])
    rows = sweep(vlm, {"raw": sv, "unit": sv.normalized()}, _eval_samples(samples)[:4], alphas=[3],
                 scorer=lambda predictions, baseline: {"n": len(predictions)}, max_new_tokens=2,
                 out=tmp_path / "sw", progress=False)
    assert [(r["method"], r["layer"]) for r in rows] == [("raw", "1"), ("unit", "1")]
    assert sorted(p.name for p in (tmp_path / "sw").glob("pred_*.jsonl")) == ["pred_raw_L1_a3.jsonl",
                                                                             "pred_unit_L1_a3.jsonl"]
    with pytest.raises(XlvlmError, match="cannot be part of a file name"):
        sweep(vlm, {"../up": sv}, _eval_samples(samples)[:1], alphas=[1], progress=False)


def test_a_sweep_takes_an_aggregator_added_to_the_registry(vlm_of, samples, tmp_path, monkeypatch):
    from xlvlm.steer.registry import AGGREGATORS

    def median_difference(source_rows, target_rows):
        return target_rows.float().median(0).values - source_rows.float().median(0).values

    monkeypatch.setitem(AGGREGATORS, "median-diff", median_difference)
    vlm = vlm_of("llava")
    source, target = _planted_stores(tmp_path, vlm.hidden_size)
    rows = sweep_stores(vlm, source, target, _eval_samples(samples), layers=[1], alphas=[2], methods=["median-diff"],
                        max_new_tokens=2, batch_size=8, progress=False)
    assert [(r["method"], r["layer"], r["alpha"]) for r in rows] == [("median-diff", "1", 2.0)]
