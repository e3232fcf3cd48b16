"""The in-memory flow, written as a notebook user calls it: extract without a folder, use the
store everywhere a folder's store goes, save it later."""

import json

import pytest
import torch
from PIL import Image

import xlvlm
from xlvlm.concepts import learn_concepts_streaming
from xlvlm.errors import XlvlmError
from xlvlm.features import InMemoryStore


def test_extract_without_out_equals_the_folder_store(vlm_of, samples, tmp_path):
    vlm = vlm_of("llava")
    memory = xlvlm.extract(vlm, samples[:5], layers=[1, "final"], select="last-prompt", batch_size=2, progress=False)
    folder = xlvlm.extract(vlm, samples[:5], layers=[1, "final"], select="last-prompt", out=tmp_path / "s",
                           batch_size=2, shard_samples=2, progress=False)
    assert isinstance(memory, InMemoryStore) and list(tmp_path.iterdir()) == [tmp_path / "s"]
    assert memory.layers == folder.layers == ["1", "final"]
    assert memory.ids == folder.ids and len(memory) == 5 and memory.hidden_size == vlm.hidden_size
    assert [s["text"] for s in memory.samples] == [s["text"] for s in folder.samples]
    for layer in (1, "1", "final", 1 - vlm.num_layers):
        torch.testing.assert_close(memory.features(layer), folder.features(layer), rtol=0, atol=0)
    assert torch.equal(memory.present, folder.present) and torch.equal(memory.row_sample, folder.row_sample)


def test_in_memory_store_saves_to_a_checksummed_folder(vlm_of, samples, tmp_path):
    vlm = vlm_of("llava")
    memory = xlvlm.extract(vlm, samples[:3], layers=[0], select="all", progress=False)
    saved = memory.save(tmp_path / "saved")
    saved.verify()
    assert isinstance(saved, xlvlm.FeatureStore) and saved.ids == memory.ids
    torch.testing.assert_close(saved.features(0), memory.features(0), rtol=0, atol=0)
    assert torch.equal(saved.row_sample, memory.row_sample)
    with pytest.raises(XlvlmError, match="already holds a feature store"):
        memory.save(tmp_path / "saved")


def test_pil_images_as_samples_and_how_a_saved_store_names_them(vlm_of, samples, tmp_path):
    vlm = vlm_of("llava")
    from_files = xlvlm.extract(vlm, samples[:2], layers=["final"], progress=False)
    pictures = [dict(s, image=Image.open(s["image"])) for s in samples[:2]]
    in_memory = xlvlm.extract(vlm, pictures, layers=["final"], progress=False)
    torch.testing.assert_close(in_memory.features("final"), from_files.features("final"), rtol=0, atol=0)
    assert in_memory.samples[0]["image"] is pictures[0]["image"]  # kept in memory for figures
    saved = in_memory.save(tmp_path / "pil")
    label = saved.samples[0]["image"]
    width, height = pictures[0]["image"].size
    assert label.startswith(f"<PIL.Image {width}x{height} RGB sha256:") and label.endswith(">")
    # straight to a folder too
    direct = xlvlm.extract(vlm, pictures, layers=["final"], out=tmp_path / "direct", progress=False)
    assert direct.samples[0]["image"] == label
    assert json.loads((tmp_path / "direct" / "shard-00000.jsonl").read_text().splitlines()[0])["image"] == label


def test_from_tensors_is_in_memory_and_keys_layers_one_way(tmp_path):
    X = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    store = xlvlm.FeatureStore.from_tensors({3: X, "final": X + 1}, [{"id": i} for i in range(6)])
    assert store.layers == ["3", "final"] and store.ids == [str(i) for i in range(6)]
    torch.testing.assert_close(store.features(3), store.features("3"))
    torch.testing.assert_close(store.features(" 3"), X)
    old_form = xlvlm.FeatureStore.from_tensors(tmp_path / "old", {"3": X}, [{"id": i} for i in range(6)])
    assert isinstance(old_form, xlvlm.FeatureStore) and (tmp_path / "old" / "manifest.json").is_file()
    with pytest.raises(XlvlmError, match="row 2 .*NaN"):
        xlvlm.FeatureStore.from_tensors({3: torch.where(torch.arange(6)[:, None] == 2, float("nan"), X)},
                                        [{"id": i} for i in range(6)])
    with pytest.raises(XlvlmError, match=r"has no 'id'"):
        xlvlm.FeatureStore.from_tensors({3: X}, [{"name": i} for i in range(6)])


def test_in_memory_stores_go_where_folder_stores_go(tmp_path):
    g = torch.Generator().manual_seed(1)
    ids = [{"id": f"s{i}"} for i in range(24)]
    source = xlvlm.FeatureStore.from_tensors({2: torch.randn(24, 8, generator=g).abs()}, ids, num_layers=4)
    target = xlvlm.FeatureStore.from_tensors({2: torch.randn(24, 8, generator=g).abs() + 1}, ids, num_layers=4)
    sv = xlvlm.SteeringVector.mean_difference(source, target, layers=[2])
    torch.testing.assert_close(sv.layer_activations["2"], target.features(2).mean(0) - source.features(2).mean(0))
    assert xlvlm.SteeringVector.mean_difference(source, target, layers=["2"]).layers == ["2"]
    assert xlvlm.SteeringVector.mean_difference(source, target, layers=[-2]).layers == ["2"]
    result = xlvlm.analyse_shift(source, target, layer=2, n_concepts=3, method="kmeans")
    assert result.shift_vectors.shape == (3, 8)
    streamed = learn_concepts_streaming(source, "2", method="kmeans", n_concepts=3, batch_rows=5)
    assert streamed.components.shape == (3, 8)


def test_sweep_takes_in_memory_stores(vlm_of, samples):
    from xlvlm.steer.run import sweep_stores

    vlm = vlm_of("llava")
    source = xlvlm.extract(vlm, samples[:4], layers=[1], progress=False)
    target = xlvlm.extract(vlm, samples[4:], layers=[1], progress=False)
    questions = [dict(s, answer=a) for s, a in zip(samples[:3], ["yes", "no", "red"])]
    rows = sweep_stores(vlm, source, target, questions, layers=[1], alphas=[0.0, 1.0], max_new_tokens=2,
                        progress=False)
    assert [(r["layer"], r["alpha"]) for r in rows] == [("1", 0.0), ("1", 1.0)]


def test_sample_subset_keeps_the_chosen_samples_rows_in_order(tmp_path):
    from xlvlm.features.store import sample_subset

    X = torch.arange(12.0).reshape(4, 3)
    store = xlvlm.FeatureStore.from_tensors({2: X, 5: -X}, [{"id": f"s{i}"} for i in range(4)])
    subset = sample_subset(store, [3, 0], layers=["5"])
    assert subset.ids == ["s3", "s0"] and subset.layers == ["5"]
    assert torch.equal(subset.features("5"), torch.stack([-X[3], -X[0]]))
    saved = xlvlm.FeatureStore.from_tensors(tmp_path / "s", {2: X}, [{"id": f"s{i}"} for i in range(4)])
    assert torch.equal(sample_subset(saved, [1]).features("2"), X[1:2])
