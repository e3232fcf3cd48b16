"""Save/load round trips (safetensors + JSON, no pickle) for every method."""

import json

import pytest
import torch

from xlvlm.concepts import METHODS, ConceptDictionary, learn_concepts
from xlvlm.concepts.dictionary import META_FILE, TENSORS_FILE
from xlvlm.errors import XlvlmError


@pytest.mark.parametrize("method", list(METHODS))
def test_round_trip_equal(method, tmp_path, planted, planted_nonnegative):
    Z = (planted_nonnegative if method == "nmf" else planted)[0][:120]
    cd = learn_concepts(Z, method, 4, seed=2, **({"steps": 10} if method == "topk-sae" else {}))
    cd.save(tmp_path / "dictionary")
    loaded = ConceptDictionary.load(tmp_path / "dictionary")
    assert loaded.method == cd.method and loaded.params == cd.params and loaded.info == cd.info
    assert torch.equal(loaded.components, cd.components) and torch.equal(loaded.activations, cd.activations)
    assert loaded.state.keys() == cd.state.keys()
    for name in cd.state:
        assert torch.equal(loaded.state[name], cd.state[name])
    assert torch.equal(loaded.transform(Z), cd.transform(Z))
    assert torch.equal(loaded.inverse_transform(cd.activations), cd.inverse_transform(cd.activations))


def test_folder_contents_and_loading_by_file(tmp_path, planted):
    cd = learn_concepts(planted[0][:50], "kmeans", 3)
    folder = cd.save(tmp_path / "c")
    assert sorted(p.name for p in folder.iterdir()) == sorted([META_FILE, TENSORS_FILE])
    meta = json.loads((folder / META_FILE).read_text())
    assert meta["method"] == "kmeans" and meta["n_concepts"] == 3 and meta["n_features"] == 64
    assert torch.equal(ConceptDictionary.load(folder / META_FILE).components, cd.components)


def test_mismatched_tensor_file_is_refused(tmp_path, planted):
    first = learn_concepts(planted[0][:50], "kmeans", 3, seed=0).save(tmp_path / "a")
    second = learn_concepts(planted[0][:50], "kmeans", 3, seed=1).save(tmp_path / "b")
    (first / TENSORS_FILE).write_bytes((second / TENSORS_FILE).read_bytes())
    with pytest.raises(XlvlmError, match="does not match"):
        ConceptDictionary.load(first)


def test_save_overwrites_and_refuses_a_file_path(tmp_path, planted):
    folder = learn_concepts(planted[0][:50], "pca", 2).save(tmp_path / "c")
    learn_concepts(planted[0][:50], "pca", 3).save(folder)
    assert ConceptDictionary.load(folder).n_concepts == 3
    (tmp_path / "f").write_text("x")
    with pytest.raises(XlvlmError, match="not a folder"):
        learn_concepts(planted[0][:50], "pca", 2).save(tmp_path / "f")
