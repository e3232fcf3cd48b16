"""Stores read in pieces, and concepts learned from them without loading a whole layer."""

import pytest
import torch

from xlvlm import FeatureStore
from xlvlm.concepts import learn_concepts
from xlvlm.concepts.planted import planted_matrix
from xlvlm.concepts import learn_concepts_streaming
from xlvlm.errors import XlvlmError
from xlvlm.features.distributed import merge_ranks, rank_folder
from tests.scale.conftest import write_store

N, D, K = 1200, 48, 6


@pytest.fixture(scope="module")
def planted_store(tmp_path_factory):
    """Planted Z = U V + noise in a store of 13 shards (uneven), float32."""
    Z, _, _ = planted_matrix(N, D, K, seed=4)
    path = tmp_path_factory.mktemp("planted") / "store"
    write_store(path, {"final": Z}, shard_rows=97)
    return FeatureStore(path), Z


def _error(cd, Z) -> float:
    return float((Z - cd.inverse_transform(cd.activations)).norm() / Z.norm())


@pytest.mark.parametrize("batch_rows", [1, 50, 97, 500, 5000])
def test_iter_rows_gives_back_the_layer(planted_store, batch_rows):
    store, Z = planted_store
    pieces = list(store.iter_rows("final", batch_rows=batch_rows))
    assert all(p.shape[0] == batch_rows for p in pieces[:-1]) and 0 < pieces[-1].shape[0] <= batch_rows
    assert torch.equal(torch.cat(pieces), Z)
    order = list(range(len(store.manifest.shards)))[::-1]
    assert torch.equal(torch.cat(list(store.iter_rows("final", batch_rows, shard_order=order))),
                       torch.cat([Z[a:a + 97] for a in range(0, N, 97)][::-1]))


def test_iter_rows_present_only_over_merged_rank_stores(tmp_path):
    """Absent samples' NaN rows are left out, in a store merged from two ranks (sample offsets)."""
    Z = torch.arange(10 * 3, dtype=torch.float32).reshape(10, 3)
    present = [i % 3 != 1 for i in range(10)]
    Z[[i for i in range(10) if not present[i]]] = float("nan")
    ids = [f"x{i}" for i in range(10)]
    write_store(rank_folder(tmp_path, 0, 2), {"final": Z[:6]}, 4, present=present[:6], ids=ids[:6])
    write_store(rank_folder(tmp_path, 1, 2), {"final": Z[6:]}, 3, present=present[6:], ids=ids[6:])
    merge_ranks(tmp_path, 2, ids, batch_size=1)
    store = FeatureStore(tmp_path)
    assert store.ids == ids and store.row_sample.tolist() == list(range(10))
    expected = store.features("final", present_only=True)
    assert expected.shape[0] == sum(present)
    assert torch.equal(torch.cat(list(store.iter_rows("final", 2, present_only=True))), expected)


@pytest.mark.parametrize("method", ["snmf", "kmeans"])
def test_streaming_reaches_the_in_memory_reconstruction(planted_store, method, monkeypatch):
    store, Z = planted_store
    in_memory = learn_concepts(Z, method=method, n_concepts=K)
    # Nothing may load a whole layer: only iter_rows is left working.
    monkeypatch.setattr(FeatureStore, "features", lambda *a, **k: pytest.fail("loaded a whole layer"))
    streamed = learn_concepts_streaming(store, "final", method=method, n_concepts=K, batch_rows=128)
    assert streamed.components.shape == (K, D) and streamed.activations.shape == (N, K)
    assert _error(streamed, Z) <= _error(in_memory, Z) * 1.02 + 1e-4
    torch.testing.assert_close(streamed.transform(Z), streamed.activations, atol=1e-4, rtol=1e-4)
    assert streamed.params["streaming"] and streamed.info["passes"] >= 3


def test_streaming_snmf_with_l1_and_seeds(planted_store):
    store, Z = planted_store
    a = learn_concepts_streaming(store, "final", n_concepts=K, batch_rows=200, seed=3, l1=0.05)
    b = learn_concepts_streaming(store.path, "final", n_concepts=K, batch_rows=200, seed=3, l1=0.05)
    assert torch.equal(a.components, b.components)
    assert _error(a, Z) <= _error(learn_concepts(Z, n_concepts=K, l1=0.05), Z) * 1.02 + 1e-4
    assert float(a.state["feature_scale"]) == pytest.approx(float(Z.square().sum(1).mean().sqrt()), rel=1e-5)


def test_streaming_errors_are_one_line(planted_store, tmp_path):
    store, _ = planted_store
    cases = [
        (dict(method="pca"), "cannot stream"),
        (dict(method="snmf", inner=3), "unknown option"),
        (dict(n_concepts=0), "positive integer"),
        (dict(batch_rows=0), "batch_rows"),
        (dict(n_concepts=N + 1), "more than the"),
    ]
    for kwargs, needle in cases:
        with pytest.raises(XlvlmError) as info:
            learn_concepts_streaming(store, "final", **{"n_concepts": K, **kwargs})
        assert needle in str(info.value) and "\n" not in str(info.value)
    Z = torch.ones(4, 3)
    Z[1] = float("nan")
    write_store(tmp_path / "nan", {"final": Z}, 2, present=[True, False, True, True])
    kept = learn_concepts_streaming(tmp_path / "nan", "final", method="kmeans", n_concepts=1)
    assert kept.activations.shape == (3, 1)
    with pytest.raises(XlvlmError, match="NaN"):
        learn_concepts_streaming(tmp_path / "nan", "final", method="kmeans", n_concepts=1, present_only=False)
