import pytest

from xlvlm.data import select_subset
from xlvlm.errors import XlvlmError

SAMPLES = [
    {"id": "q1", "image": "/x/1.png", "prompt": "p", "answer": "red"},
    {"id": "q2", "image": "/x/2.png", "prompt": "p", "answer": "Bored"},
    {"id": "c3", "image": "/x/3.png", "prompt": "p", "captions": ["A dog's toy on the BEACH.", "A toy."]},
    {"id": "c4", "image": "/x/4.png", "prompt": "p", "captions": ["A fire hydrant, painted blue."]},
    {"id": "v5", "image": "/x/5.png", "prompt": "p", "answer": "no", "answers": ["no", "Red", "no"]},
    {"id": "n6", "image": "/x/6.png", "prompt": "p"},
]


def ids(samples):
    return [s["id"] for s in samples]


def test_contains_matches_whole_words_in_answers_and_captions():
    assert ids(select_subset(SAMPLES, contains="red")) == ["q1", "v5"]
    assert ids(select_subset(SAMPLES, contains="DOG")) == ["c3"]
    assert ids(select_subset(SAMPLES, contains="fire hydrant")) == ["c4"]
    assert ids(select_subset(SAMPLES, contains=["beach", "bored"])) == ["q2", "c3"]
    with pytest.raises(XlvlmError):
        select_subset(SAMPLES, contains="hydrant fire")  # the parts of a phrase must be in order


def test_word_class_shipped_and_file(tmp_path):
    assert ids(select_subset(SAMPLES, word_class="colors")) == ["q1", "c4", "v5"]
    assert ids(select_subset(SAMPLES, word_class="places")) == ["c3"]
    words = tmp_path / "animals.txt"
    words.write_text("# animals\ndog\ncat\n")
    assert ids(select_subset(SAMPLES, word_class=str(words))) == ["c3"]
    assert ids(select_subset(SAMPLES, word_class="colors", contains="hydrant")) == ["c4"]


def test_ids_file_keeps_data_order(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("v5\n\n# comment\nq1\n")
    assert ids(select_subset(SAMPLES, ids_file=path)) == ["q1", "v5"]
    assert ids(select_subset(SAMPLES, ids_file=path, contains="no")) == ["v5"]


def test_random_subset_is_deterministic_by_seed():
    many = [{"id": str(i), "image": "/x.png", "prompt": "p"} for i in range(100)]
    first = ids(select_subset(many, n=10, seed=3))
    assert first == ids(select_subset(many, n=10, seed=3))
    assert first != ids(select_subset(many, n=10, seed=4))
    assert len(set(first)) == 10 and first == sorted(first, key=int)
    assert ids(select_subset(many, n=100)) == ids(many)


def test_subset_errors(tmp_path):
    cases = [
        (dict(contains="purple"), "no sample's answer or captions contain 'purple'"),
        (dict(contains="..."), "has no letters or digits"),
        (dict(word_class="sentiments"), "word of class 'sentiments'"),
        (dict(word_class="nonexistent"), "unknown word class 'nonexistent'"),
        (dict(n=7), "n=7 but only 6 samples match"),
        (dict(n=0), "must be a positive integer"),
        (dict(ids_file=tmp_path / "none.txt"), "none.txt: id file not found"),
    ]
    bad = tmp_path / "bad.txt"
    bad.write_text("q1\nzzz\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    cases += [(dict(ids_file=bad), "1 id(s) not in the data, e.g. 'zzz'"), (dict(ids_file=empty), "id file is empty")]
    for options, fragment in cases:
        with pytest.raises(XlvlmError) as info:
            select_subset(SAMPLES, **options)
        assert fragment in str(info.value) and "\n" not in str(info.value), options


def test_answer_type_filter_takes_one_type_or_several():
    typed = [dict(s, answer_type=t) for s, t in zip(SAMPLES, ["color", "other", "caption", "caption", "yes/no", "other"])]
    assert ids(select_subset(typed, answer_type="yes/no")) == ["v5"]
    assert ids(select_subset(typed, answer_type="color,yes/no")) == ["q1", "v5"]
    assert ids(select_subset(typed, answer_type=["other"], contains="bored")) == ["q2"]
    with pytest.raises(XlvlmError, match="the data has: caption, color, other, yes/no"):
        select_subset(typed, answer_type="number")
