"""Shared planted data: Z = U V + noise with cluster-like codes (N=600, D=64, K=8)."""

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from xlvlm.concepts.planted import planted_matrix

N, D, K = 600, 64, 8


@pytest.fixture(scope="session")
def planted():
    """(Z (N, D), U (N, K), V (K, D)) with a fixed seed."""
    return planted_matrix(N, D, K, seed=0)


@pytest.fixture(scope="session")
def planted_nonnegative():
    return planted_matrix(N, D, K, seed=1, nonnegative=True)


@pytest.fixture(scope="session")
def sklearn_reference(planted):
    """scikit-learn's DictionaryLearning(positive_code=True) on the planted data, as the research
    code ran it: (X float64 (N, D), code (N, K), components (K, D))."""
    decomposition = pytest.importorskip("sklearn.decomposition")
    X = planted[0].numpy().astype("float64")
    reference = decomposition.DictionaryLearning(
        n_components=K, positive_code=True, fit_algorithm="cd", transform_algorithm="lasso_cd", random_state=0
    )
    code = reference.fit_transform(X)
    return X, code, reference.components_


def matched_cosines(truth: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
    """Cosines of truth (K, D) rows with found (K, D) rows under the best permutation (Hungarian)."""
    a = torch.nn.functional.normalize(torch.as_tensor(truth, dtype=torch.float64), dim=1)
    b = torch.nn.functional.normalize(torch.as_tensor(found, dtype=torch.float64), dim=1)
    similarity = (a @ b.T).numpy()
    rows, cols = linear_sum_assignment(-similarity)
    return torch.as_tensor(similarity[rows, cols])


def relative_error(Z: torch.Tensor, U: torch.Tensor, V: torch.Tensor) -> float:
    """||Z - U V||_F / ||Z||_F in float64."""
    Z, U, V = (torch.as_tensor(t, dtype=torch.float64) for t in (Z, U, V))
    return float((Z - U @ V).norm() / Z.norm())

