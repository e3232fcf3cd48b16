"""Metrics against hand-computed small cases."""

import pytest
import torch

from xlvlm.concepts import ConceptDictionary, dead_concepts, overlap, reconstruction_r2, sparsity
from xlvlm.errors import XlvlmError


def test_overlap_hand_computed():
    # W0={a,b}, W1={b,c,d}, W2={e}: ordered pairs (i,j): |Wi∩Wj|/|Wi|
    # (0,1)=1/2 (0,2)=0 (1,0)=1/3 (1,2)=0 (2,0)=0 (2,1)=0 -> (1/2 + 1/3) / 6 = 5/36
    assert overlap([["a", "b"], ["b", "c", "d"], ["e"]]) == pytest.approx(5 / 36)


def test_overlap_bounds_duplicates_and_empty_lists():
    assert overlap([["x", "y"], ["x", "y"]]) == 1.0
    assert overlap([["x"], ["y"], ["z"]]) == 0.0
    assert overlap([["x", "x", "y"], ["x"]]) == pytest.approx((1 / 2 + 1) / 2)
    assert overlap([[], ["x"]]) == 0.0
    with pytest.raises(XlvlmError, match="at least two"):
        overlap([["x"]])


def test_reconstruction_r2_hand_computed():
    # X rows (0,0), (2,0): mean (1,0), total sum of squares = 2. A one-concept linear dictionary
    # V = [(1, 0)] with codes (0, 1) reconstructs (0,0), (1,0): residual 1 -> R^2 = 1 - 1/2.
    X = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    cd = ConceptDictionary(
        torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0], [1.0]]), "snmf", {"l1": 0.0}, {"feature_scale": torch.tensor(1.0)}
    )
    assert reconstruction_r2(X, cd, activations=torch.tensor([[0.0], [1.0]])) == pytest.approx(0.5)
    # Through transform, the exact non-negative codes (0, 2) reconstruct X perfectly.
    assert reconstruction_r2(X, cd) == pytest.approx(1.0)


def test_sparsity_hand_computed():
    A = torch.tensor([[0.0, 1.0], [2.0, 0.0], [0.0, 0.0]])
    assert sparsity(A) == pytest.approx(4 / 6)
    assert sparsity(torch.tensor([[1e-9, 1.0]])) == 0.5  # 1e-9 <= 1e-6 * max
    assert sparsity(torch.zeros(2, 2)) == 1.0


def test_dead_concepts_hand_computed():
    A = torch.tensor([[3.0, 1.0, 0.0, 0.0], [0.5, 2.0, 0.1, 0.0], [4.0, 0.0, 0.2, 0.0]])
    assert dead_concepts(A) == 2  # argmaxes are 0, 1, 0: concepts 2 and 3 never top-1
    assert dead_concepts(A, by="active") == 1  # only concept 3 is never above zero
    with pytest.raises(XlvlmError, match="top1"):
        dead_concepts(A, by="sometimes")
