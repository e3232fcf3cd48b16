"""The research code's definitions kept as named options (docs/research-code.md), each checked
against a hand computation of the research formula."""

import pytest

from xlvlm.concepts.metrics import overlap
from xlvlm.errors import XlvlmError
from xlvlm.evaluation import token_of_interest_accuracy


def test_overlap_counts_a_duplicated_word_twice_only_when_asked():
    words = [["red", "red", "blue"], ["red"], ["green"]]
    # sets: W0={red, blue}: (0,1)=1/2, (0,2)=0, (1,0)=1, others 0 -> 1.5 / 6
    assert overlap(words) == pytest.approx(1.5 / 6)
    # research, over lists: (0,1) = 2 of the 3 listed words are in w1 -> 2/3; (1,0) = 1 -> (2/3 + 1) / 6
    assert overlap(words, count_duplicates=True) == pytest.approx((2 / 3 + 1) / 6)
    # without duplicates the two agree
    plain = [["a", "b"], ["b", "c", "d"], ["e"]]
    assert overlap(plain, count_duplicates=True) == pytest.approx(overlap(plain)) == pytest.approx(5 / 36)


PREDICTIONS = [
    {"id": "1", "prediction": "No.", "answer_type": "yes/no"},
    {"id": "2", "prediction": "yes", "answer_type": "yes/no"},
    {"id": "3", "prediction": "no", "answer_type": "yes/no"},
    {"id": "4", "prediction": "red", "answer_type": "other"},
]


def test_token_of_interest_accuracy_both_formulas():
    ours = token_of_interest_accuracy(PREDICTIONS, "no")
    assert ours["per_type"] == {"other": 0.0, "yes/no": pytest.approx(2 / 3)}
    assert ours["overall"] == pytest.approx(2 / 4)
    assert ours["overall_mean_over_types"] == pytest.approx((2 / 3 + 0) / 2)
    research = token_of_interest_accuracy(PREDICTIONS, "no", formula="research")
    # VQA accuracy against the one reference ["no"]: 100 * min(1, 1 / 3) per hit
    assert research["per_type"]["yes/no"] == pytest.approx(100 * (1 / 3 + 0 + 1 / 3) / 3)
    assert research["overall_mean_over_types"] == pytest.approx(100 / 3 * ours["overall_mean_over_types"])
    with pytest.raises(XlvlmError, match="unknown formula"):
        token_of_interest_accuracy(PREDICTIONS, "no", formula="other")
