"""The POPE-style benchmark on easy-VQA images: balanced, three kinds of absent objects, deterministic."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from xlvlm.data import load_samples
from xlvlm.apps.organism import data as ev
from xlvlm.apps.organism import pope

# A planted confusion ranking (no model needed): each value's "most confused" is fixed here.
CONFUSED = {
    "color": {c: [o for o in reversed(ev.COLOR_NAMES) if o != c] for c in ev.COLOR_NAMES},
    "shape": {"circle": ["triangle", "rectangle"], "rectangle": ["triangle", "circle"],
              "triangle": ["rectangle", "circle"]},
}


@pytest.fixture(scope="module")
def bench():
    return pope.pope_benchmark("test", seed=0, images=60, confused=CONFUSED)


def test_questions_are_the_organisms_phrasing_and_labels_follow_the_image(bench):
    labels = ev.image_labels("test")
    assert len(bench) == 3 * 60 * 4
    known = set(ev.VOCABULARY)
    for s in bench:
        shape, color = labels[s["image_id"]]
        own = color if s["object_kind"] == "color" else shape
        assert (s["object"] == own) == (s["label"] == "yes") and s["present"] == own
        assert s["prompt"] in (f"is there a {s['object']} shape in the image?", f"is there a {s['object']} in the image?")
        assert set(s["prompt"].rstrip("?").split()) <= known  # every word is in the organism's vocabulary
        assert s["answer"] == s["label"] and s["image"] == ev.image_paths("test")[s["image_id"]]
    # easy-VQA itself asks these two phrasings
    phrasings = {ev.phrasing(s["prompt"]) for s in ev.vqa_samples("train")}
    assert {ev.phrasing(s["prompt"]) for s in bench} <= phrasings
    assert len({s["id"] for s in bench}) == len(bench)


def test_each_split_is_balanced_and_picks_absent_objects_its_own_way(bench):
    frequent = pope.answer_frequency()
    for split in pope.SPLITS:
        rows = [s for s in bench if s["split"] == split]
        assert Counter(s["label"] for s in rows) == {"yes": 120, "no": 120}
        for s in (r for r in rows if r["label"] == "no"):
            kind, present = s["object_kind"], s["present"]
            if split == "popular":
                top = [v for v in frequent[kind] if v != present][: pope.POPULAR_TOP[kind]]
                assert s["object"] in top
            elif split == "adversarial":
                assert s["object"] == CONFUSED[kind][present][0]
    randoms = Counter(s["object"] for s in bench if s["split"] == "random" and s["label"] == "no"
                      and s["object_kind"] == "color")
    assert len(randoms) >= 6  # drawn across the absent colours, not one favourite
    # the positives are the same questions in every split
    positives = {split: [(s["image_id"], s["object"]) for s in bench if s["split"] == split and s["label"] == "yes"]
                 for split in pope.SPLITS}
    assert positives["random"] == positives["popular"] == positives["adversarial"]


def test_popular_follows_training_answer_frequency():
    counts = Counter(s["answer"] for s in ev.vqa_samples("train"))
    for kind, ranking in pope.answer_frequency().items():
        assert [counts[v] for v in ranking] == sorted((counts[v] for v in ranking), reverse=True)
        assert len(ranking) == (8 if kind == "color" else 3)


def test_deterministic_given_the_seed_and_train_part_uses_training_images(bench):
    again = pope.pope_benchmark("test", seed=0, images=60, confused=CONFUSED)
    assert again == bench
    other = pope.pope_benchmark("test", seed=1, images=60, confused=CONFUSED)
    assert other != bench
    train = pope.pope_benchmark("train", seed=0, images=10, splits=("random",))
    assert {s["image_id"] for s in train} <= set(ev.image_labels("train")) and len(train) == 40


def test_written_jsonl_reads_back_through_the_pope_reader(tmp_path, monkeypatch):
    monkeypatch.setattr(pope, "confusions", lambda: CONFUSED)
    path = tmp_path / "pope.jsonl"
    written = pope.write_pope_jsonl(path, part="test", seed=0, images=5)
    samples = load_samples(f"pope:{path}")
    assert [s["id"] for s in samples] == [s["id"] for s in written]
    assert [(s["label"], s["split"], s["prompt"]) for s in samples] == [(s["label"], s["split"], s["prompt"]) for s in written]
    assert json.loads(path.read_text().splitlines()[0])["object_kind"] in ("color", "shape")


def test_cli_writes_the_benchmark(tmp_path, monkeypatch, capsys):
    from xlvlm.cli import main

    monkeypatch.setattr(pope, "confusions", lambda: CONFUSED)
    out = tmp_path / "bench.jsonl"
    assert main(["organism", "pope", "--part", "test", "--images", "3", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert len(load_samples(f"pope:{out}")) == 3 * 3 * 4
