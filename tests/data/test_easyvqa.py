from collections import Counter
from pathlib import Path

import pytest

from xlvlm.data import load_samples
from xlvlm.errors import XlvlmError


@pytest.fixture(scope="module")
def train():
    return load_samples("easyvqa:train")


def test_easyvqa_counts_and_answer_types(train):
    test = load_samples("easyvqa:test")
    assert len(train) == 38575 and len(test) == 9673
    assert len({s["image"] for s in train}) == 4000 and len({s["image"] for s in test}) == 1000
    types = {}
    for s in train + test:
        types.setdefault(s["answer_type"], set()).add(s["answer"])
    assert types == {
        "yes/no": {"yes", "no"},
        "shape": {"circle", "rectangle", "triangle"},
        "color": {"red", "green", "blue", "black", "gray", "teal", "brown", "yellow"},
    }
    assert Counter(s["answer_type"] for s in train) == {"yes/no": 28407, "color": 5166, "shape": 5002}
    assert Counter(s["answer_type"] for s in test) == {"yes/no": 7136, "color": 1280, "shape": 1257}
    assert len({s["id"] for s in train}) == len(train)


def test_easyvqa_sample_shape(train):
    first = train[0]
    assert first["id"] == "easyvqa-train-0"
    assert first["prompt"] == first["question"] == "what is the blue shape?"
    assert (first["answer"], first["answer_type"]) == ("rectangle", "shape")
    assert Path(first["image"]).is_absolute() and Path(first["image"]).is_file()
    templated = load_samples("easyvqa:test", prompt="Q: {question} A:")
    assert templated[0]["id"] == "easyvqa-test-0" and templated[0]["prompt"] == f"Q: {templated[0]['question']} A:"


def test_easyvqa_bad_spec():
    for spec, fragment in [("easyvqa:", "unknown split ''"), ("easyvqa:val", "unknown split 'val'")]:
        with pytest.raises(XlvlmError, match=fragment):
            load_samples(spec)
    with pytest.raises(XlvlmError, match="option 'image_root' does not apply to easyvqa"):
        load_samples("easyvqa:test", image_root="/tmp")
