"""Labels, questions and captions of easy-VQA as the organism learns them."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from xlvlm.apps.organism import data as ev
from xlvlm.apps.organism.captions import named_colors, naming_report


def test_test_split_labels_cover_every_image_and_agree_with_its_questions():
    # image_labels raises if a label contradicts any question about its image.
    labels = ev.image_labels("test")
    assert len(labels) == 1000
    shapes, colors = ev.label_counts(labels)
    assert set(shapes) == set(ev.SHAPES) and set(colors) == set(ev.COLOR_NAMES)


def test_pixel_labels_match_question_labels():
    labels = ev.image_labels("test")
    paths = ev.image_paths("test")
    for image_id in sorted(labels)[:100]:
        with Image.open(paths[image_id]) as image:
            assert ev.pixel_label(image) == labels[image_id]


def test_balancing_makes_yes_and_no_equally_common_per_phrasing():
    questions = [s for s in ev.vqa_samples("test") if s["answer_type"] == "yes/no"]
    labels = ev.image_labels("test")
    before = Counter((ev.phrasing(s["prompt"]), s["answer"]) for s in questions)
    assert before[("is there a C shape?", "no")] > 3 * before[("is there a C shape?", "yes")]
    extra = ev.balanced_yes_no(questions, labels, seed=0)
    after = Counter((ev.phrasing(s["prompt"]), s["answer"]) for s in questions + extra)
    for key in {k for k, _ in after}:
        assert after[(key, "yes")] == after[(key, "no")], key
    # Every added question is true of its image.
    for s in extra[:200]:
        shape, color = labels[s["image_id"]]
        facts = ev._question_constraints(s["prompt"], s["answer"])
        assert all((shape if kind == "shape" else color) == value for kind, value, holds in facts if holds)


def test_captions_and_their_report():
    samples = ev.caption_samples("test", with_color=True)[:3]
    assert all(s["prompt"] == ev.CAPTION_PROMPT for s in samples)
    assert samples[0]["answer"] == f"a {samples[0]['color']} {samples[0]['shape']}"
    preds = [{**s, "prediction": s["answer"]} for s in samples]
    preds.append({**samples[0], "prediction": f"a {samples[0]['shape']}"})
    report = naming_report(preds)
    assert report["names_color"] == 0.75 and report["shape_correct"] == 1.0
    assert named_colors("a teal triangle.") == ["teal"]


def test_drawn_shapes_read_back_as_their_shape_and_colour():
    rng = np.random.default_rng(0)
    drawn = [(shape, color) for shape in ev.SHAPES for color in ev.COLOR_NAMES]
    read = [ev.pixel_label(ev.draw_shape(rng, shape, color)) for shape, color in drawn]
    assert all(r[1] == d[1] for r, d in zip(read, drawn))
    # The fill-ratio reading of the shape can miss on the smallest, most aliased shapes.
    assert np.mean([r[0] == d[0] for r, d in zip(read, drawn)]) >= 0.85


def test_vocabulary_covers_every_question_word():
    words = set(ev.VOCABULARY)
    for s in ev.vqa_samples("test"):
        assert set(s["prompt"].replace("?", " ?").split()) <= words, s["prompt"]
