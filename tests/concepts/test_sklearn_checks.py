"""scikit-learn's own estimator checks on every concept estimator (small data, few iterations)."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from xlvlm.concepts import NMF, NNDL, PCA, KMeans, MiniBatchKMeans, SemiNMF, Simple, TopKSAE
from xlvlm.concepts.estimators import ESTIMATORS

# Parameters that keep every check fast; the checks set n_components themselves where they need to.
CHECKED = [
    SemiNMF(n_components=2, max_iter=10, kmeans_iter=10, init_runs=1),
    NNDL(n_components=2, max_iter=5, code_iter=50, kmeans_iter=10, init_runs=1),
    NMF(n_components=2, max_iter=20, kmeans_iter=10, init_runs=1),
    KMeans(n_components=2, max_iter=20, n_init=1),
    MiniBatchKMeans(n_components=2, batch_size=16, epochs=2, init_rows=32, n_init=1, max_iter=20),
    PCA(n_components=2),
    Simple(n_components=2),
    TopKSAE(n_components=2, steps=20, batch_size=16),
]


def expected_failures(estimator) -> dict[str, str]:
    """The checks that cannot apply to an estimator, each with its reason."""
    return {}


def test_every_estimator_is_checked():
    assert sorted(type(e).__name__ for e in CHECKED) == sorted(cls.__name__ for cls in ESTIMATORS)


@parametrize_with_checks(CHECKED, expected_failed_checks=expected_failures)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
