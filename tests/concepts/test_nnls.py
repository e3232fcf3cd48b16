"""The non-negative coding solver against scipy's NNLS and the lasso's optimality conditions."""

import numpy as np
import torch
from scipy.optimize import nnls

from xlvlm.concepts.solvers.nnls import flush_denormals, nonneg_codes


def test_matches_scipy_nnls():
    g = torch.Generator().manual_seed(0)
    V = torch.randn(6, 30, generator=g)
    Z = torch.randn(25, 30, generator=g)
    U, sweeps = nonneg_codes(Z, V, tol=1e-7, max_iter=2000)
    assert sweeps < 2000
    for n in range(Z.shape[0]):
        expected, _ = nnls(V.double().numpy().T, Z[n].double().numpy())
        np.testing.assert_allclose(U[n].numpy(), expected, atol=1e-4)


def test_l1_solution_satisfies_kkt_conditions():
    g = torch.Generator().manual_seed(1)
    V = torch.randn(5, 20, generator=g)
    Z = torch.randn(40, 20, generator=g) * 3
    l1 = 2.0
    U, _ = nonneg_codes(Z.double(), V.double(), l1=l1, tol=1e-12, max_iter=10000)
    gradient = U @ (V.double() @ V.double().T) - Z.double() @ V.double().T + l1
    assert (U >= 0).all()
    assert gradient[U > 0].abs().max() < 1e-8  # stationary where active
    assert gradient[U == 0].min() > -1e-8  # no descent direction into the feasible set


def test_flush_denormals_restores_the_previous_mode():
    def flushing():
        return (torch.tensor([1e-39]) * torch.tensor([1.0])).item() == 0.0

    before = flushing()
    with flush_denormals():
        assert flushing() or not torch.set_flush_denormal(True)
    assert flushing() == before
