"""Bad input gives a one-line XlvlmError that says what to do."""

import numpy as np
import pytest
import torch

from xlvlm.concepts import ConceptDictionary, learn_concepts
from xlvlm.errors import XlvlmError


def one_line_error(match, fn, *args, **kwargs):
    with pytest.raises(XlvlmError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_nan_and_inf_rows_are_counted_and_the_fix_named():
    X = torch.randn(20, 5)
    X[3, 1] = float("nan")
    X[7] = float("inf")
    message = one_line_error("2 of 20 rows", learn_concepts, X, "snmf", 3)
    assert "present_only=True" in message


def test_more_concepts_than_samples():
    one_line_error("at most 4 concepts", learn_concepts, torch.randn(4, 6), "snmf", 5)


@pytest.mark.parametrize("X", [torch.zeros(0, 5), np.zeros((5, 0)), torch.zeros(5)])
def test_empty_or_not_a_matrix(X):
    one_line_error("empty|2-D", learn_concepts, X, "kmeans", 1)


def test_unknown_method_lists_the_known_ones():
    message = one_line_error("unknown concept method 'ica'", learn_concepts, torch.randn(10, 3), "ica", 2)
    for name in ("snmf", "nndl", "kmeans", "pca", "nmf", "simple", "topk-sae"):
        assert name in message


def test_unknown_option_and_bad_n_concepts():
    one_line_error("unknown option.*alpha.*l1", learn_concepts, torch.randn(10, 3), "snmf", 2, alpha=1.0)
    one_line_error("positive integer", learn_concepts, torch.randn(10, 3), "snmf", 0)


def test_nmf_needs_non_negative_features():
    one_line_error("non-negative.*snmf", learn_concepts, torch.randn(30, 4), "nmf", 2)


def test_transform_with_wrong_width():
    cd = learn_concepts(torch.randn(30, 4), "pca", 2)
    one_line_error("4", cd.transform, torch.randn(3, 5))
    one_line_error("2 concepts", cd.inverse_transform, torch.randn(3, 3))


def test_load_of_missing_or_foreign_folder(tmp_path):
    one_line_error("no saved concept dictionary", ConceptDictionary.load, tmp_path / "nothing")


def test_pca_cannot_give_more_directions_than_dimensions():
    one_line_error("at most min", learn_concepts, torch.randn(10, 3), "pca", 4)


@pytest.mark.parametrize("method", ["snmf", "nndl", "kmeans", "pca", "nmf", "simple", "topk-sae"])
@pytest.mark.parametrize(
    "X", [torch.zeros(10, 4), torch.ones(10, 4), torch.rand(1, 3)], ids=["zeros", "constant", "one-row"]
)
def test_degenerate_inputs_give_finite_dictionaries(method, X):
    cd = learn_concepts(X, method, 1, **({"steps": 5} if method == "topk-sae" else {}))
    assert torch.isfinite(cd.components).all() and torch.isfinite(cd.transform(X)).all()
