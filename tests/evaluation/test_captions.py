import shutil

import pytest

from xlvlm.evaluation import caption_metrics, class_word_frequency
from xlvlm.evaluation import captions as captions_module

REFERENCES = [
    ["A man riding a brown horse on a beach.", "A person rides a horse by the sea."],
    ["Two red cars parked on a city street.", "Cars parked along the street."],
    ["A cat sleeping on a white bed.", "A small cat asleep on a bed."],
    ["A plate of pasta with tomato sauce.", "Spaghetti on a plate."],
]


def records(predictions):
    return [{"id": str(i), "prediction": p, "captions": refs} for i, (p, refs) in enumerate(zip(predictions, REFERENCES))]


IDENTICAL = records([refs[0] for refs in REFERENCES])
UNRELATED = records(["Blue sky.", "An old clock tower.", "Green grass, tall trees.", "Snow falls at night."])
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="METEOR and the PTB tokenizer need Java")


@needs_java
def test_identical_captions_score_high_unrelated_low():
    good = caption_metrics(IDENTICAL, meteor=True)   # one METEOR run (~10 s: the JVM loads its tables)
    bad = caption_metrics(UNRELATED, meteor=False)
    assert good["tokenizer"] == "ptb" and good["n_scored"] == 4
    assert good["BLEU-4"] == pytest.approx(1.0, abs=1e-6) and good["ROUGE-L"] == pytest.approx(1.0)
    assert good["CIDEr-D"] > 2.0 and good["METEOR"] > 0.9
    assert bad["BLEU-4"] < 0.01 and bad["CIDEr-D"] < 0.1 and bad["ROUGE-L"] < 0.2
    assert bad["METEOR"] is None and "METEOR not requested" in bad["notes"]


@needs_java
def test_ptb_tokenizer_keeps_lines_and_drops_punctuation():
    assert captions_module.ptb_tokenize(["A dog's \"toy\", isn't it?", "", "Café au lait."]) == ["a dog 's toy is n't it", "", "café au lait"]


def test_without_java_falls_back_and_skips_meteor(monkeypatch):
    monkeypatch.setattr(captions_module.shutil, "which", lambda name: None)
    result = caption_metrics(IDENTICAL)
    assert result["tokenizer"] == "simple" and result["METEOR"] is None
    assert result["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert any("java not found" in note for note in result["notes"])


def test_references_missing():
    result = caption_metrics([{"id": "a", "prediction": "A dog."}])
    assert result["n_scored"] == 0 and result["CIDEr-D"] is None and "not computed" in result["notes"][0]


def test_class_word_frequency():
    texts = ["A red car and a blue car.", "A happy dog on the beach, red again.", "Nothing here; bored."]
    report = class_word_frequency(texts)
    assert report["colors"] == {"share": pytest.approx(2 / 3), "per_text": 1.0, "counts": {"red": 2, "blue": 1}}
    assert report["places"]["counts"] == {"beach": 1} and report["places"]["share"] == pytest.approx(1 / 3)
    assert report["sentiments"]["counts"] == {"happy": 1}
    assert class_word_frequency([], ["colors"])["colors"]["share"] is None
