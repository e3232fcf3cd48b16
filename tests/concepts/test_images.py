"""Most-activating samples (MAS)."""

import pytest
import torch

from xlvlm.concepts import ground_images
from xlvlm.errors import XlvlmError


def test_top_samples_by_decreasing_activation_with_stable_ties():
    A = torch.tensor([[0.1, 0.0], [0.9, 0.0], [0.5, 2.0], [0.5, 0.0], [0.0, 1.0]])
    assert ground_images(A, top_k=3) == [[1, 2, 3], [2, 4]]
    assert ground_images(A, top_k=3, positive_only=False) == [[1, 2, 3], [2, 4, 0]]


def test_absent_samples_are_left_out():
    A = torch.tensor([[1.0], [3.0], [2.0]])
    samples = [{"id": "a"}, {"id": "b", "present": False}, {"id": "c", "present": True}]
    assert ground_images(A, samples, top_k=20) == [[2, 0]]


def test_length_mismatch_and_bad_top_k():
    with pytest.raises(XlvlmError, match="2 samples but 3"):
        ground_images(torch.ones(3, 1), [{}, {}])
    with pytest.raises(XlvlmError, match="top_k"):
        ground_images(torch.ones(3, 1), top_k=0)
