"""Streaming through the estimators' partial_fit gives the numbers of the earlier streaming module."""

import pytest
import torch

from xlvlm import FeatureStore
from xlvlm.concepts import MiniBatchKMeans, SemiNMF, learn_concepts_streaming
from xlvlm.concepts.planted import planted_matrix
from tests.scale.conftest import write_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    Z, _, _ = planted_matrix(1200, 48, 6, seed=4)
    path = tmp_path_factory.mktemp("planted") / "store"
    write_store(path, {"final": Z}, shard_rows=97)
    return FeatureStore(path)


def test_same_numbers_as_the_earlier_streaming_module(store):
    """Pinned from xlvlm.concepts.streaming at commit 724de81 (its defaults then: snmf 10 passes,
    tol 1e-3, 4096 sample rows; kmeans 3 epochs, 10 starts), same store, seed 3, 128-row batches.
    snmf differs only in the first pass's penalty scale (from the sample, not the whole store)."""
    snmf = learn_concepts_streaming(store, "final", "snmf", 6, batch_rows=128, seed=3, l1=0.05, max_iter=10,
                                    tol=1e-3, init_rows=4096)
    assert snmf.info["objective"] == pytest.approx(7185.086760517723, rel=1e-5)
    assert snmf.info["n_iter"] == 3 and snmf.info["passes"] == 5
    assert snmf.info["l1_penalty"] == pytest.approx(0.5377813816070557, rel=1e-6)
    kmeans = learn_concepts_streaming(store, "final", "kmeans", 6, batch_rows=128, seed=3, n_init=10)
    assert kmeans.method == "minibatch-kmeans"
    assert kmeans.info["inertia"] == pytest.approx(6824.251976979248, rel=1e-6) and kmeans.info["passes"] == 5


def test_partial_fit_by_hand_over_shards_reaches_the_in_memory_fit(store):
    """A user's own loop: start from a sample of rows, then passes over iter_rows' minibatches."""
    Z = store.features("final")
    sample = Z[torch.randperm(len(Z), generator=torch.Generator().manual_seed(0))[:300]]
    error = lambda C, A: float((Z - A @ C).norm() / Z.norm())  # noqa: E731
    est = SemiNMF(6, max_iter=10, tol=1e-3, seed=1).partial_fit(sample)
    est.fit_passes(lambda: store.iter_rows("final", 100))
    in_memory = SemiNMF(6, seed=1)
    assert error(est.components_, est.transform(Z)) <= error(in_memory.fit(Z).components_, in_memory.transform(Z)) * 1.02

    mbk = MiniBatchKMeans(6, seed=1).partial_fit(sample)
    mbk.fit_passes(lambda: store.iter_rows("final", 100))
    full = learn_concepts_streaming(store, "final", "kmeans", 6, batch_rows=100, seed=1)
    inertia = float(torch.cdist(Z.double(), mbk.components_.double()).min(1).values.square().sum())
    assert inertia <= full.info["inertia"] * 1.02 and mbk.n_iter_ == 3


def test_streaming_refuses_options_only_an_in_memory_fit_reads(store):
    from xlvlm.errors import XlvlmError

    for method, option in (("snmf", "init_offset"), ("kmeans", "batch_size")):
        with pytest.raises(XlvlmError, match=f"unknown option.*{option}.*streaming"):
            learn_concepts_streaming(store, "final", method, 6, **{option: 1})
