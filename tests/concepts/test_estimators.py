"""The estimator classes: parameters, fit/transform against learn_concepts, planted structure,
minibatches, and the dictionary round trip."""

import pytest
import torch

from tests.concepts.conftest import D, K, N, matched_cosines
from xlvlm.concepts import (
    METHODS, NMF, NNDL, PCA, ConceptDictionary, KMeans, MiniBatchKMeans, SemiNMF, Simple, TopKSAE, learn_concepts,
    reconstruction_r2,
)
from xlvlm.concepts.estimators import ConceptEstimator
from xlvlm.concepts.planted import planted_matrix
from xlvlm.errors import XlvlmError

CLASSES = {"snmf": SemiNMF, "nndl": NNDL, "nmf": NMF, "kmeans": KMeans, "pca": PCA, "topk-sae": TopKSAE,
           "simple": Simple, "minibatch-kmeans": MiniBatchKMeans}
FAST = {"topk-sae": {"steps": 60, "batch_size": 128}}


def features(method, planted, planted_nonnegative):
    return (planted_nonnegative if method == "nmf" else planted)[0]


def test_registry_names_every_class():
    assert {name: cls for name, cls in METHODS.items()} == CLASSES
    assert SemiNMF.defaults["l1"] == 0.0 and "n_concepts" not in SemiNMF.defaults


@pytest.mark.parametrize("method", list(CLASSES))
def test_init_stores_parameters_only_and_get_set_params(method):
    cls = CLASSES[method]
    est = cls(n_concepts=3, seed=7)
    params = est.get_params()
    assert params["n_concepts"] == 3 and params["seed"] == 7 and params["device"] is None
    assert set(params) == {"n_concepts", "seed", "device", "n_components", "random_state", *cls.defaults}
    assert not [name for name in vars(est) if name.endswith("_")]  # nothing learned yet
    assert est.set_params(n_concepts=4) is est and est.n_concepts == 4
    with pytest.raises(XlvlmError, match="unknown option"):
        est.set_params(bogus=1)
    with pytest.raises(XlvlmError, match="not fitted"):
        est.transform(torch.zeros(2, 3))
    assert cls(**est.get_params()).get_params() == est.get_params()  # a clone from its parameters


@pytest.mark.parametrize("method", list(CLASSES))
def test_fit_then_transform_equals_learn_concepts(method, planted, planted_nonnegative):
    Z = features(method, planted, planted_nonnegative)[:200]
    options = FAST.get(method, {})
    cd = learn_concepts(Z, method, 4, seed=1, **options)
    est = CLASSES[method](n_concepts=4, seed=1, **options).fit(Z)
    assert torch.equal(est.components_, cd.components)
    scale = float(cd.activations.abs().max())
    torch.testing.assert_close(est.transform(Z), cd.activations, rtol=0, atol=1e-4 * scale)
    torch.testing.assert_close(est.inverse_transform(cd.activations), cd.inverse_transform(cd.activations))
    assert est.n_iter_ == cd.info.get("n_iter")


@pytest.mark.parametrize("method", list(CLASSES))
def test_dictionary_round_trip_keeps_class_params_and_tensors(method, planted, planted_nonnegative, tmp_path):
    Z = features(method, planted, planted_nonnegative)[:150]
    est = CLASSES[method](n_concepts=3, seed=2, **FAST.get(method, {}))
    activations = est.fit_transform(Z)
    loaded = ConceptDictionary.load(est.to_dictionary(activations).save(tmp_path / "cd"))
    again = METHODS[loaded.method].from_dictionary(loaded)
    assert type(again) is type(est) and again.get_params() == est.get_params()
    assert torch.equal(again.components_, est.components_)
    torch.testing.assert_close(again.transform(Z[:20]), est.transform(Z[:20]), rtol=0, atol=1e-6)
    assert again.n_features_in_ == Z.shape[1] and again.transform(Z[:5].numpy()).shape == (5, 3)


def test_from_dictionary_of_an_older_streamed_save_ignores_its_extra_params():
    """Dictionaries saved by the earlier streaming module carry max_passes, codes_iter, ..."""
    Z = planted_matrix(60, 8, 3, seed=0)[0]
    cd = learn_concepts(Z, "snmf", 3)
    old = ConceptDictionary(cd.components, cd.activations, "snmf",
                            {**cd.params, "max_passes": 10, "codes_iter": 100, "streaming": True, "batch_rows": 16},
                            cd.state, cd.info)
    est = SemiNMF.from_dictionary(old)
    torch.testing.assert_close(est.transform(Z), cd.activations, rtol=0, atol=1e-5)


@pytest.mark.parametrize("cls", [SemiNMF, NNDL, KMeans, MiniBatchKMeans])
def test_planted_directions_are_found(cls, planted):
    Z, _, V = planted
    est = cls(n_concepts=K).fit(Z)
    assert est.components_.shape == (K, D)
    assert matched_cosines(V, est.components_).mean() > 0.97


def test_nmf_pca_sae_simple_on_planted_structure(planted, planted_nonnegative):
    assert reconstruction_r2(planted_nonnegative[0], learn_concepts(planted_nonnegative[0], "nmf", K)) > 0.99
    assert matched_cosines(planted_nonnegative[2], NMF(K).fit(planted_nonnegative[0]).components_).mean() > 0.97
    Z, _, V = planted
    pca = PCA(K).fit(Z)
    # the planted directions lie in the span of the top-K principal directions
    residual = V - (V @ pca.components_.T) @ pca.components_
    assert float(residual.norm() / V.norm()) < 0.05
    sae = TopKSAE(K, steps=300, batch_size=128)
    codes = sae.fit_transform(Z)
    assert ((codes > 0).sum(1) <= K // 4).all()
    error = (Z - sae.inverse_transform(codes)).norm() / (Z - Z.mean(0)).norm()
    assert float(error) < 0.6  # well below the centred data's own norm (1.0)
    simple = Simple(K).fit(Z)
    top = torch.sort(Z.norm(dim=1), descending=True).indices[:K]
    torch.testing.assert_close(simple.components_, torch.nn.functional.normalize(Z[top], dim=1))


def test_partial_fit_only_where_it_applies_and_continues_a_fit(planted):
    assert not hasattr(PCA(2), "partial_fit") and not hasattr(NMF(2), "partial_fit")
    Z = planted[0]
    for cls in (SemiNMF, KMeans, TopKSAE):
        est = cls(K, **FAST.get(cls.name, {})).fit(Z[:300])
        before = est.components_.clone()
        est.partial_fit(Z[300:400])
        assert not torch.equal(est.components_, before)  # the minibatch moved the fitted concepts
        assert matched_cosines(before, est.components_).mean() > 0.9  # from where fit left them
    for cls in (SemiNMF, KMeans, MiniBatchKMeans):
        with pytest.raises(XlvlmError, match="end_pass"):
            cls(2).end_pass()
    for cls in (SemiNMF, MiniBatchKMeans):
        with pytest.raises(XlvlmError, match="before a start"):
            cls(2).fit_passes(lambda: [torch.randn(4, 3)])
    # MiniBatchKMeans' fit is itself a partial_fit run: more minibatches continue it
    mbk = MiniBatchKMeans(2).fit(torch.randn(10, 3))
    before = mbk.components_.clone()
    assert not torch.equal(mbk.partial_fit(torch.randn(4, 3) + 5).components_, before)


def test_semi_nmf_passes_over_minibatches_match_in_memory(planted):
    """partial_fit/end_pass over minibatches: each pass is one exact block-coordinate step."""
    Z = planted[0]
    est = SemiNMF(n_concepts=K, max_iter=30, tol=1e-5)
    est.partial_fit(Z[torch.randperm(N, generator=torch.Generator().manual_seed(0))[:300]])
    est.fit_passes(lambda: Z.split(64))
    in_memory = learn_concepts(Z, "snmf", K)
    error = lambda comp, codes: float((Z - codes @ comp).norm() / Z.norm())  # noqa: E731
    assert error(est.components_, est.transform(Z)) <= error(in_memory.components, in_memory.activations) * 1.01
    assert est.info_["n_iter"] == est.n_iter_ >= 2
    with pytest.raises(XlvlmError, match="end_pass"):
        est.end_pass()


def test_semi_nmf_one_pass_is_the_exact_least_squares_step(planted):
    """A slow reference: for fixed V, the pass's V is argmin ||Z - U V|| over all rows, with U the
    exact non-negative codes (scipy's NNLS, row by row)."""
    nnls = pytest.importorskip("scipy.optimize").nnls
    Z = planted[0][:200].double()
    est = SemiNMF(n_concepts=3, seed=0, max_iter=1)
    est.partial_fit(Z[:50])
    V0 = est.components_.clone().double()
    est.fit_passes(lambda: Z.float().split(32))
    U = torch.stack([torch.as_tensor(nnls(V0.T.numpy(), z.numpy())[0]) for z in Z])
    V = torch.linalg.lstsq(U, Z).solution
    V = V / V.norm(dim=1, keepdim=True)
    torch.testing.assert_close(est.components_.double(), V, rtol=0, atol=2e-4)


def slow_kmeans_inertia(Z, C, iterations=50):
    """Plain Lloyd in float64 from centroids C, distances by explicit differences per centroid
    (no Gram expansion); its inertia."""
    Z, C = Z.double(), C.double().clone()
    for _ in range(iterations):
        distances = torch.stack([((Z - c) ** 2).sum(1) for c in C], dim=1)
        labels = distances.argmin(1)
        for c in range(C.shape[0]):
            if (labels == c).any():
                C[c] = Z[labels == c].mean(0)
    return float(torch.stack([((Z - c) ** 2).sum(1) for c in C], dim=1).min(1).values.sum())


def test_minibatch_kmeans_on_planted_clusters_against_a_slow_reference():
    g = torch.Generator().manual_seed(0)
    centres = 6.0 * torch.randn(10, 16, generator=g)
    truth = torch.arange(2000) % 10
    Z = centres[truth] + torch.randn(2000, 16, generator=g)
    est = MiniBatchKMeans(n_concepts=10, batch_size=256, init_rows=500, seed=0)
    codes = est.fit_transform(Z)
    labels = codes.argmax(1)
    # every planted cluster is one found cluster
    assert len({(int(t), int(l)) for t, l in zip(truth, labels)}) == 10
    reference = slow_kmeans_inertia(Z, centres)
    assert est.info_["inertia"] <= reference * 1.01
    assert est.n_iter_ == 3 and est.info_["n_iter"] == 3
    torch.testing.assert_close(est.transform(Z), codes)


def test_minibatch_kmeans_partial_fit_by_hand_equals_fit_passes():
    Z = planted_matrix(400, 12, 4, seed=3)[0]
    a = MiniBatchKMeans(4, epochs=2, seed=5)
    a.partial_fit(Z[:100])
    a.fit_passes(lambda: Z.split(50))
    b = MiniBatchKMeans(4, epochs=2, seed=5)
    b.partial_fit(Z[:100])
    for _ in range(2):
        for Z_b in Z.split(50):
            b.partial_fit(Z_b)
        b.end_pass()
    assert torch.equal(a.components_, b.components_)
    with pytest.raises(XlvlmError, match="features"):
        b.partial_fit(torch.zeros(3, 5))


def test_estimator_errors_are_one_line():
    for call in (lambda: SemiNMF(0).fit(torch.randn(5, 3)), lambda: KMeans(9).fit(torch.randn(5, 3)),
                 lambda: SemiNMF(2, l1=float("nan")).fit(torch.randn(5, 3))):
        with pytest.raises(XlvlmError) as info:
            call()
        assert "\n" not in str(info.value)
    assert issubclass(SemiNMF, ConceptEstimator)
