"""Every method: shapes, dtype, determinism, transform/inverse_transform consistency."""

import numpy as np
import pytest
import torch

from tests.concepts.conftest import D, K, N, matched_cosines
from xlvlm.concepts import METHODS, learn_concepts, reconstruction_r2
from xlvlm.errors import XlvlmError

FAST = {"topk-sae": {"steps": 60, "batch_size": 128}}


def features_for(method, planted, planted_nonnegative):
    return planted_nonnegative[0] if method == "nmf" else planted[0]


@pytest.fixture(scope="module")
def fitted(planted, planted_nonnegative):
    return {
        m: learn_concepts(features_for(m, planted, planted_nonnegative), m, K, seed=0, **FAST.get(m, {}))
        for m in METHODS
    }


@pytest.mark.parametrize("method", list(METHODS))
def test_shapes_dtypes_and_transform(method, fitted, planted, planted_nonnegative):
    cd = fitted[method]
    Z = features_for(method, planted, planted_nonnegative)
    assert cd.method == method and cd.params["n_concepts"] == K and cd.params["seed"] == 0
    assert cd.components.shape == (K, D) and cd.activations.shape == (N, K)
    assert cd.components.dtype == cd.activations.dtype == torch.float32
    assert torch.isfinite(cd.components).all() and torch.isfinite(cd.activations).all()
    torch.testing.assert_close(cd.transform(Z), cd.activations, rtol=0, atol=1e-4 * float(cd.activations.abs().max()))
    assert cd.inverse_transform(cd.activations).shape == (N, D)
    assert cd.transform(Z[:3].numpy()).shape == (3, K)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "topk-sae"])
def test_same_seed_same_result(method, fitted, planted, planted_nonnegative):
    again = learn_concepts(features_for(method, planted, planted_nonnegative), method, K, seed=0)
    assert torch.equal(again.components, fitted[method].components)
    assert torch.equal(again.activations, fitted[method].activations)


def test_sae_same_seed_same_result(planted):
    a = learn_concepts(planted[0][:200], "topk-sae", 4, seed=5, steps=20)
    b = learn_concepts(planted[0][:200], "topk-sae", 4, seed=5, steps=20)
    assert torch.equal(a.components, b.components) and torch.equal(a.activations, b.activations)


def test_reconstruction_quality_on_planted_data(fitted, planted, planted_nonnegative):
    # Noise is ~6.5% of the signal's norm, so a rank-8 linear fit explains ~99.5%.
    for method in ("snmf", "pca", "nmf"):
        assert reconstruction_r2(features_for(method, planted, planted_nonnegative), fitted[method]) > 0.99
    assert reconstruction_r2(planted[0], fitted["nndl"]) > 0.97  # the L1 penalty shrinks codes
    assert reconstruction_r2(planted[0], fitted["kmeans"]) > 0.9  # one centroid per sample


def test_methods_that_should_find_the_planted_directions(fitted, planted, planted_nonnegative):
    for method in ("snmf", "nndl", "kmeans"):
        assert matched_cosines(planted[2], fitted[method].components).mean() > 0.97
    assert matched_cosines(planted_nonnegative[2], fitted["nmf"].components).mean() > 0.97


def test_kmeans_activations_are_inverse_distances(fitted, planted):
    cd = fitted["kmeans"]
    distances = torch.cdist(planted[0].double(), cd.components.double())
    torch.testing.assert_close(cd.activations.double(), 1 / (1 + distances), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(cd.inverse_transform(cd.activations), cd.components[distances.argmin(1)])


def test_pca_matches_numpy_svd(fitted, planted):
    cd = fitted["pca"]
    Z = planted[0].double().numpy()
    centred = Z - Z.mean(0)
    vt = np.linalg.svd(centred, full_matrices=False)[2][:K]
    cosines = np.abs((cd.components.double().numpy() * vt).sum(1))
    assert cosines.min() > 0.999
    expected = torch.as_tensor(centred) @ cd.components.double().T
    torch.testing.assert_close(cd.activations.double(), expected, rtol=1e-4, atol=1e-4)


def test_pca_randomised_path_matches_exact(monkeypatch):
    from xlvlm.concepts.solvers import pca

    g = torch.Generator().manual_seed(0)
    signal = torch.randn(300, 5, generator=g) @ torch.randn(5, 80, generator=g) * torch.linspace(3, 1, 80)
    Z = signal + 0.01 * torch.randn(300, 80, generator=g)
    exact = learn_concepts(Z, "pca", 4)
    monkeypatch.setattr(pca, "_EXACT_UP_TO", 10)
    randomised = learn_concepts(Z, "pca", 4)
    torch.testing.assert_close(randomised.components, exact.components, rtol=0, atol=1e-3)


def test_simple_takes_largest_norm_samples(fitted, planted):
    cd = fitted["simple"]
    Z = planted[0]
    top = torch.sort(Z.norm(dim=1), descending=True).indices[:K]
    torch.testing.assert_close(cd.components, Z[top] / Z[top].norm(dim=1, keepdim=True))
    torch.testing.assert_close(cd.activations, Z @ cd.components.T)


def test_nndl_reaches_sklearn_objective(fitted, sklearn_reference):
    X, code, components = sklearn_reference
    ours = fitted["nndl"]
    assert ours.activations.min() >= 0 and (ours.components.norm(dim=1) <= 1 + 1e-5).all()
    # Same objective (alpha = 1, sklearn's default): ours should reach at least sklearn's value.
    sklearn_objective = 0.5 * np.sum((X - code @ components) ** 2) + np.sum(code)
    assert ours.info["objective"] <= sklearn_objective * (1 + 1e-4)


def test_sae_codes_have_at_most_k_active(fitted):
    cd = fitted["topk-sae"]
    assert ((cd.activations > 0).sum(1) <= max(1, K // 4)).all()
    assert cd.activations.min() >= 0


def test_device_argument(planted):
    cd = learn_concepts(planted[0][:100], "kmeans", 3, device="cpu")
    assert cd.components.device.type == "cpu"


def test_simple_projection_and_research_distance_by_hand():
    Z = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])  # norms 5, 1, 2: rows 0 and 2 are kept
    ours = learn_concepts(Z, method="simple", n_concepts=2)
    torch.testing.assert_close(ours.components, torch.tensor([[0.6, 0.8], [0.0, 1.0]]))  # unit rows
    torch.testing.assert_close(ours.activations[1], torch.tensor([0.6, 0.0]))  # projections
    research = learn_concepts(Z, method="simple", n_concepts=2, activation="distance")
    torch.testing.assert_close(research.components, torch.tensor([[3.0, 4.0], [0.0, 2.0]]))  # raw rows
    expected = torch.tensor([1 / (1 + 20 ** 0.5), 1 / (1 + 5 ** 0.5)])  # 1 / (1 + distance)
    torch.testing.assert_close(research.activations[1], expected)
    torch.testing.assert_close(research.activations[0], torch.tensor([1.0, 1 / (1 + 13 ** 0.5)]))
    torch.testing.assert_close(research.transform(Z), research.activations)
    torch.testing.assert_close(research.inverse_transform(research.activations)[1], torch.tensor([0.0, 2.0]))
    with pytest.raises(XlvlmError, match="activation"):
        learn_concepts(Z, method="simple", n_concepts=2, activation="cosine")
