import pytest

from xlvlm.errors import XlvlmError
from xlvlm.evaluation import answer_distribution, normalize_answer, vqa_accuracy, vqa_report


@pytest.mark.parametrize("raw, normal", [
    ("Yes.", "yes"),                       # period not before a digit is deleted, lower-case
    ("yes !", "yes"),                      # a mark next to a space is deleted
    ("black-and-white", "black and white"),  # a mark inside a word becomes a space
    ("hello,world", "hello world"),
    ("hello, world", "hello world"),
    ("1,000", "1000"),                     # digit,digit: every mark is deleted
    ("2.5", "2.5"),                        # a decimal point stays
    ("3.", "3"),
    ("(a) dog", "dog"),                    # "(" becomes a space, ") " is deleted, article dropped
    ('"hello"', "hello"),
    ("\tYes\n", "yes"),
    ("Two", "2"), ("none", "0"), ("TEN", "10"), ("eleven", "eleven"),
    ("the red one", "red 1"), ("An apple", "apple"), ("a", ""),
    ("dont", "don't"), ("isnt", "isn't"), ("cant", "can't"), ("couldnt've", "couldn't've"),
    ("couldn'tve", "couldn't've"), ("don't", "don't"),
    ("its", "its"), ("well", "well"), ("were", "were"),  # real words stay
    ("a:b", "a:b"), ("it's", "it's"),      # colons and apostrophes are kept
    ("  many   spaces ", "many spaces"),
])
def test_normalisation(raw, normal):
    assert normalize_answer(raw) == normal


@pytest.mark.parametrize("matching, expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_ten_annotators_leave_one_out(matching, expected):
    # m matches of 10: the m subsets without a matching annotator see m - 1, the others m.
    answers = ["Two"] * matching + ["3"] * (10 - matching)
    assert vqa_accuracy("2", answers) == pytest.approx(expected)


def test_single_answer_and_other_counts():
    assert vqa_accuracy("The Dog.", ["dog"]) == 1.0
    assert vqa_accuracy("dogs", ["dog"]) == 0.0
    assert vqa_accuracy("no", ["no", "no", "yes"]) == pytest.approx(2 / 3)
    assert vqa_accuracy("no", ["no", "yes"]) == pytest.approx(1 / 2)
    assert vqa_accuracy("no", ["no"] * 5) == 1.0
    with pytest.raises(XlvlmError):
        vqa_accuracy("no", [])


PREDICTIONS = [
    {"id": "1", "prediction": "Yes", "answer": "yes", "answer_type": "yes/no"},
    {"id": "2", "prediction": "yes", "answer": "no", "answer_type": "yes/no"},
    {"id": "3", "prediction": "two", "answers": ["2"] * 3 + ["3"] * 7, "answer": "3", "answer_type": "number"},
    {"id": "4", "prediction": "the red", "answers": ["red"] * 10, "answer_type": "other"},
    {"id": 5, "prediction": "Blue"},
]


def test_report_per_type_and_distribution():
    report = vqa_report(PREDICTIONS)
    assert (report["n"], report["n_scored"]) == (5, 4)
    assert report["accuracy"] == pytest.approx((1 + 0 + 0.9 + 1) / 4)
    per_type = {k: (v["n"], v["accuracy"]) for k, v in report["per_type"].items()}
    assert per_type == {"yes/no": (2, 0.5), "number": (1, pytest.approx(0.9)), "other": (1, 1.0), "unknown": (1, None)}
    assert [(d["answer"], d["count"]) for d in report["answer_distribution"]] == [("yes", 2), ("2", 1), ("blue", 1), ("red", 1)]
    assert report["answer_distribution"][0]["share"] == pytest.approx(0.4)
    assert [d["answer"] for d in report["per_type"]["yes/no"]["answer_distribution"]] == ["yes"]
    assert "left out of the accuracy" in report["notes"][0]


def test_report_without_references_and_bad_records():
    report = vqa_report([{"id": "a", "prediction": "x"}])
    assert report["accuracy"] is None and "accuracy not computed" in report["notes"][0]
    assert answer_distribution([{"prediction": "A cat"}, {"prediction": "cat."}]) == [{"answer": "cat", "count": 2, "share": 1.0}]
    for records, fragment in [
        ([{"id": "a"}], "predictions[0]: missing field 'prediction'"),
        ([{"id": "a", "prediction": 3}], "field 'prediction' should be a string"),
        ([{"id": "a", "prediction": "x"}, {"id": "a", "prediction": "y"}], "predictions[1]: duplicate id 'a'"),
        ([], "no predictions given"),
    ]:
        with pytest.raises(XlvlmError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
            vqa_report(records)


def test_overall_accuracy_over_questions_and_over_types():
    # yes/no: 3 questions, 2 right (2/3); color: 1 question, wrong (0); 4 questions in all.
    predictions = [
        {"id": "a", "answer_type": "yes/no", "answer": "yes", "prediction": "yes"},
        {"id": "b", "answer_type": "yes/no", "answer": "no", "prediction": "no"},
        {"id": "c", "answer_type": "yes/no", "answer": "no", "prediction": "yes"},
        {"id": "d", "answer_type": "color", "answer": "red", "prediction": "blue"},
        {"id": "e", "answer_type": "color", "prediction": "blue"},  # no reference: not scored
    ]
    report = vqa_report(predictions)
    assert report["accuracy"] == pytest.approx(2 / 4)  # official VQAv2: mean over questions
    assert report["accuracy_mean_over_types"] == pytest.approx((2 / 3 + 0) / 2)  # research: mean over types
