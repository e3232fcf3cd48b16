"""Semi-NMF recovers planted structure."""

import pytest
import torch

from tests.concepts.conftest import K, matched_cosines, relative_error
from xlvlm.concepts import learn_concepts
from xlvlm.concepts.solvers.snmf import multiplicative_update, objective


@pytest.fixture(scope="module")
def plain(planted):
    return learn_concepts(planted[0], "snmf", K, seed=0)


@pytest.fixture(scope="module")
def sparse(planted):
    return learn_concepts(planted[0], "snmf", K, seed=0, l1=0.05)


def test_recovers_components_up_to_permutation(planted, plain):
    assert matched_cosines(planted[2], plain.components).mean() >= 0.97


def test_sparsity_option_recovers_them_closer(planted, sparse):
    assert matched_cosines(planted[2], sparse.components).mean() >= 0.99
    # Planted codes have 1.3 of 8 concepts active on average: most codes should be exact zeros.
    assert (sparse.activations == 0).float().mean() > 0.7


def test_activations_are_non_negative_and_components_unit_norm(plain, sparse):
    for cd in (plain, sparse):
        assert cd.activations.min() >= 0
        torch.testing.assert_close(cd.components.norm(dim=1), torch.ones(K))
        assert cd.components.dtype == torch.float32 and cd.activations.dtype == torch.float32


def test_reconstruction_no_worse_than_sklearn(planted, plain, sklearn_reference):
    X, code, components = sklearn_reference
    assert relative_error(planted[0], plain.activations, plain.components) <= relative_error(X, code, components)


def test_transform_reproduces_training_activations(planted, plain, sparse):
    for cd in (plain, sparse):
        largest = float(cd.activations.max())
        torch.testing.assert_close(cd.transform(planted[0]), cd.activations, rtol=0, atol=1e-4 * largest)
        # A subset is solved on its own: same codes within the solver's tolerance.
        torch.testing.assert_close(cd.transform(planted[0][:50]), cd.activations[:50], rtol=0, atol=1e-3 * largest)


def test_same_seed_same_result_other_seed_still_recovers(planted, plain):
    again = learn_concepts(planted[0], "snmf", K, seed=0)
    assert torch.equal(again.components, plain.components) and torch.equal(again.activations, plain.activations)
    other = learn_concepts(planted[0], "snmf", K, seed=1)
    assert matched_cosines(planted[2], other.components).mean() >= 0.97


def test_any_input_dtype_computes_in_float32(planted, plain):
    from_numpy64 = learn_concepts(planted[0].double().numpy(), "snmf", K, seed=0)
    assert from_numpy64.components.dtype == torch.float32
    torch.testing.assert_close(from_numpy64.components, plain.components)
    from_half = learn_concepts(planted[0].to(torch.bfloat16), "snmf", K, seed=0)
    assert matched_cosines(planted[2], from_half.components).mean() >= 0.97


def test_converges_and_reports_it(plain):
    assert plain.info["converged"] and plain.info["n_iter"] < plain.params["max_iter"]


def test_multiplicative_update_never_increases_the_objective():
    g = torch.Generator().manual_seed(3)
    Z = torch.randn(40, 12, generator=g)
    V = torch.randn(5, 12, generator=g)
    U = torch.rand(40, 5, generator=g)
    A, B = Z @ V.T, V @ V.T
    sq = float(Z.double().square().sum())
    for l1 in (0.0, 0.3):
        previous = objective(sq, U, A, B, l1)
        current_U = U
        for _ in range(30):
            current_U = multiplicative_update(current_U, A, B, l1)
            value = objective(sq, current_U, A, B, l1)
            assert value <= previous * (1 + 1e-6)
            previous = value
        assert current_U.min() >= 0
