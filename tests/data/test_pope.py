"""POPE reader: the official per-split files and JSONL, with one-line errors."""

import json
from pathlib import Path

import pytest

from xlvlm.data import load_samples, read_pope
from xlvlm.errors import XlvlmError


def write_lines(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


OFFICIAL = [
    {"question_id": 1, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a snowboard in the image?", "label": "yes"},
    {"question_id": 2, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a dog in the image?", "label": "no"},
]


def test_official_files_take_split_from_name_and_images_from_root(tmp_path):
    (tmp_path / "val2014").mkdir()
    write_lines(tmp_path / "pope" / "coco_pope_random.json", OFFICIAL)
    write_lines(tmp_path / "pope" / "aokvqa_pope_seem_adversarial.json", OFFICIAL[:1])
    (tmp_path / "pope" / "notes.json").write_text("not a POPE file")
    samples = read_pope(tmp_path / "pope", image_root=tmp_path / "val2014")
    # Sorted by file name: adversarial first; ids stay unique across files that both number from 1.
    assert [s["id"] for s in samples] == ["adversarial-1", "random-1", "random-2"]
    first = samples[1]
    assert first["image"] == str((tmp_path / "val2014" / "COCO_val2014_000000310196.jpg").resolve())
    assert first["prompt"] == first["question"] == "Is there a snowboard in the image?"
    assert (first["label"], first["answer"], first["answer_type"], first["split"]) == ("yes", "yes", "yes/no", "random")
    assert "text" not in first and first["question_id"] == 1
    one = read_pope(tmp_path / "pope" / "coco_pope_random.json", image_root=tmp_path / "val2014",
                    prompt="{question} Answer the question using a single word or phrase.")
    assert one[1]["prompt"] == "Is there a dog in the image? Answer the question using a single word or phrase."
    assert one[1]["label"] == "no"


def test_jsonl_form_with_ids_splits_and_relative_images(tmp_path):
    path = write_lines(tmp_path / "bench.jsonl", [
        {"id": "a", "image": "img/1.png", "question": "is there a cat?", "label": "Yes", "split": "popular"},
        {"image": "/abs/2.png", "prompt": "is there a dog?", "label": "no", "object": "dog"},
    ])
    samples = load_samples(f"pope:{path}")
    assert samples[0]["id"] == "a" and samples[0]["image"] == str((tmp_path / "img" / "1.png").resolve())
    assert samples[0]["label"] == "yes" and samples[0]["split"] == "popular"
    assert samples[1]["id"] == "bench-2" and samples[1]["image"] == "/abs/2.png" and "split" not in samples[1]
    assert samples[1]["prompt"] == "is there a dog?" and samples[1]["object"] == "dog"
    assert load_samples(f"pope:{path}", split="random")[1]["split"] == "random"


@pytest.mark.parametrize("line, fragment", [
    ({"image": "a.png", "label": "yes"}, ":1: missing field 'question'"),
    ({"image": "a.png", "text": "q?"}, ":1: missing field 'label'"),
    ({"image": "a.png", "text": "q?", "label": "maybe"}, ":1: field 'label' should be 'yes' or 'no'"),
    ({"image": "", "text": "q?", "label": "no"}, ":1: field 'image' should be a non-empty string"),
    ({"image": "a.png", "text": "q?", "label": "no", "split": "hard"}, ":1: field 'split' should be random"),
    ([1, 2], ":1: expected a JSON object"),
    ("{not json", ":1: malformed JSON"),
])
def test_bad_lines_name_file_line_and_field(tmp_path, line, fragment):
    path = write_lines(tmp_path / "p.jsonl", [line])
    with pytest.raises(XlvlmError) as info:
        read_pope(path)
    assert f"p.jsonl{fragment}" in str(info.value) and "\n" not in str(info.value)


def test_other_errors(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [{"id": 1, "image": "a", "text": "q", "label": "no"},
                                               {"id": 1, "image": "b", "text": "q", "label": "yes"}])
    cases = [
        (lambda: read_pope(path), "p.jsonl:2: duplicate id '1'"),
        (lambda: read_pope(tmp_path / "missing.json"), "missing.json: POPE file not found"),
        (lambda: read_pope(tmp_path), "no POPE files"),
        (lambda: read_pope(path, split="hard"), "unknown split 'hard'"),
        (lambda: read_pope(path, image_root=tmp_path / "nope"), "image_root folder not found"),
        (lambda: load_samples(f"pope:{path}", annotations="x"), "option 'annotations' does not apply to pope data"),
    ]
    for call, fragment in cases:
        with pytest.raises(XlvlmError) as info:
            call()
        assert fragment in str(info.value), (fragment, str(info.value))
