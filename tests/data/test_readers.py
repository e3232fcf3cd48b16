import json
from pathlib import Path

import pytest
from PIL import Image

from xlvlm.data import load_samples, read_coco_karpathy, read_folder, read_vqav2
from xlvlm.errors import XlvlmError


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def write_image(path: Path, color=(255, 0, 0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


# ---------------------------------------------------------------- COCO (Karpathy JSON)

def karpathy(tmp_path, images=None):
    images = images if images is not None else [
        {"filepath": "val2014", "filename": "COCO_val2014_000000000001.jpg", "split": "test", "cocoid": 1,
         "sentences": [{"raw": "A red car on a street. "}, {"raw": "A car parked."}]},
        {"filepath": "val2014", "filename": "COCO_val2014_000000000002.jpg", "split": "val", "cocoid": 2,
         "sentences": [{"raw": "A dog."}]},
        {"filepath": "train2014", "filename": "COCO_train2014_000000000003.jpg", "split": "restval", "cocoid": 3,
         "sentences": [{"raw": "A cat."}]},
        {"filepath": "train2014", "filename": "COCO_train2014_000000000004.jpg", "split": "train", "cocoid": 4,
         "sentences": [{"raw": "A bird."}]},
    ]
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    (tmp_path / "images").mkdir(exist_ok=True)
    return path


def test_coco_reads_split_with_image_paths_and_captions(tmp_path):
    path = karpathy(tmp_path)
    samples = read_coco_karpathy(path, image_root=tmp_path / "images")
    assert samples == [{
        "id": "1",
        "image": str((tmp_path / "images" / "val2014" / "COCO_val2014_000000000001.jpg").resolve()),
        "prompt": "Describe the image in one sentence.",
        "captions": ["A red car on a street.", "A car parked."],
        "answer": "A red car on a street.",
        "split": "test",
    }]
    assert [s["id"] for s in read_coco_karpathy(path, tmp_path / "images", split="train+restval")] == ["3", "4"]
    assert len(read_coco_karpathy(path, tmp_path / "images", split="all")) == 4
    through = load_samples(f"coco:{path}", image_root=tmp_path / "images", split="val", prompt="Caption:")
    assert [(s["id"], s["prompt"]) for s in through] == [("2", "Caption:")]


def test_coco_without_filepath_uses_image_root_and_imgid(tmp_path):
    path = karpathy(tmp_path, [{"filename": "1.jpg", "split": "test", "imgid": 7, "sentences": [{"raw": "x"}]}])
    (sample,) = read_coco_karpathy(path, tmp_path / "images")
    assert sample["id"] == "7" and sample["image"] == str((tmp_path / "images" / "1.jpg").resolve())


@pytest.mark.parametrize("images, fragment", [
    ([{"split": "test", "cocoid": 1, "sentences": []}], "images[0] is missing field 'filename'"),
    ([{"filename": "a.jpg", "split": "test", "cocoid": 1}], "images[0] is missing field 'sentences'"),
    ([{"filename": "a.jpg", "split": "test", "cocoid": 1, "sentences": [{"tokens": []}]}], "images[0].sentences[0] is missing field 'raw'"),
    ([{"filename": "a.jpg", "cocoid": 1, "sentences": []}], "images[0] is missing field 'split'"),
    ([{"filename": "a.jpg", "split": "test", "sentences": []}], "images[0] (no 'cocoid') is missing field 'imgid'"),
    ([{"filename": "a.jpg", "split": "val", "cocoid": 1, "sentences": []}], "no image in split 'test'"),
])
def test_coco_bad_records(tmp_path, images, fragment):
    path = karpathy(tmp_path, images)
    with pytest.raises(XlvlmError) as info:
        read_coco_karpathy(path, tmp_path / "images")
    assert fragment in one_line(info) and str(path) in one_line(info)


def test_coco_bad_files_and_options(tmp_path):
    path = karpathy(tmp_path)
    with pytest.raises(XlvlmError) as info:
        read_coco_karpathy(path, tmp_path / "images", split="dev")
    assert "unknown split 'dev'" in one_line(info)
    with pytest.raises(XlvlmError) as info:
        read_coco_karpathy(path, tmp_path / "nowhere")
    assert "image_root folder not found" in one_line(info)
    with pytest.raises(XlvlmError) as info:
        load_samples(f"coco:{path}")
    assert "image_root is required" in one_line(info)
    with pytest.raises(XlvlmError) as info:
        read_coco_karpathy(tmp_path / "missing.json", tmp_path / "images")
    assert "missing.json: Karpathy caption file not found" in one_line(info)
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    with pytest.raises(XlvlmError) as info:
        read_coco_karpathy(broken, tmp_path / "images")
    assert "broken.json: malformed JSON" in one_line(info)
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"annotations": []}')
    with pytest.raises(XlvlmError) as info:
        read_coco_karpathy(wrong, tmp_path / "images")
    assert "the top level is missing field 'images'" in one_line(info)


# ---------------------------------------------------------------- VQAv2

def vqa_files(tmp_path, questions=None, annotations=None, subtype="val2014", name="v2_OpenEnded_mscoco_val2014_questions.json"):
    questions = questions if questions is not None else [
        {"question_id": 10, "image_id": 42, "question": "Is it red?"},
        {"question_id": 11, "image_id": 42, "question": "How many dogs?"},
    ]
    annotations = annotations if annotations is not None else [
        {"question_id": 11, "image_id": 42, "answer_type": "number", "question_type": "how many",
         "multiple_choice_answer": "2", "answers": [{"answer": "2", "answer_id": i + 1} for i in range(10)]},
        {"question_id": 10, "image_id": 42, "answer_type": "yes/no", "question_type": "is it",
         "multiple_choice_answer": "yes", "answers": [{"answer": "yes"}] * 9 + [{"answer": "no"}]},
    ]
    q = {"questions": questions}
    if subtype:
        q["data_subtype"] = subtype
    qpath, apath = tmp_path / name, tmp_path / "v2_mscoco_val2014_annotations.json"
    qpath.write_text(json.dumps(q))
    apath.write_text(json.dumps({"annotations": annotations}))
    (tmp_path / "images").mkdir(exist_ok=True)
    return qpath, apath


def test_vqav2_reads_questions_with_answers(tmp_path):
    qpath, apath = vqa_files(tmp_path)
    samples = read_vqav2(qpath, apath, image_root=tmp_path / "images", prompt="{question} Answer in one word.")
    image = str((tmp_path / "images" / "COCO_val2014_000000000042.jpg").resolve())
    assert samples[0] == {
        "id": "10", "image": image, "prompt": "Is it red? Answer in one word.", "question": "Is it red?",
        "image_id": 42, "answer": "yes", "answers": ["yes"] * 9 + ["no"], "answer_type": "yes/no",
        "question_type": "is it",
    }
    assert samples[1]["answer_type"] == "number" and samples[1]["answers"] == ["2"] * 10
    through = load_samples(f"vqav2:{qpath}", annotations=apath, image_root=tmp_path / "images", split=None)
    assert [s["prompt"] for s in through] == ["Is it red?", "How many dogs?"]


def test_vqav2_split_from_name_option_and_subfolder(tmp_path):
    qpath, _ = vqa_files(tmp_path, subtype=None, name="v2_OpenEnded_mscoco_train2014_questions.json")
    (sample, _) = read_vqav2(qpath, image_root=tmp_path / "images")
    assert sample["image"].endswith("COCO_train2014_000000000042.jpg") and "answer" not in sample
    (tmp_path / "images" / "test2015").mkdir()
    (sample, _) = read_vqav2(qpath, image_root=tmp_path / "images", split="test-dev")
    assert sample["image"] == str((tmp_path / "images" / "test2015" / "COCO_test2015_000000000042.jpg").resolve())


@pytest.mark.parametrize("questions, annotations, fragment", [
    ([{"question_id": 1, "question": "?"}], [], "questions[0] is missing field 'image_id'"),
    ([{"question_id": 1, "image_id": "x", "question": "?"}], [], "questions[0] field 'image_id' should be int"),
    ([{"question_id": 1, "image_id": 1, "question": "?"}] * 2, [], "repeats question_id 1"),
    (None, [{"question_id": 10, "answers": [], "answer_type": "yes/no"}], "annotations[0] is missing field 'multiple_choice_answer'"),
    (None, [{"question_id": 10, "answers": [{"ans": "x"}], "answer_type": "x", "multiple_choice_answer": "x"}], "annotations[0].answers[0] is missing field 'answer'"),
    (None, [{"question_id": 10, "answers": [], "multiple_choice_answer": "x", "answer_type": "other"}], "no annotation for question_id 11"),
])
def test_vqav2_bad_records(tmp_path, questions, annotations, fragment):
    qpath, apath = vqa_files(tmp_path, questions, annotations)
    with pytest.raises(XlvlmError) as info:
        read_vqav2(qpath, apath if annotations else None, image_root=tmp_path / "images")
    assert fragment in one_line(info)


def test_vqav2_bad_split_and_prompt(tmp_path):
    qpath, apath = vqa_files(tmp_path, subtype=None, name="questions.json")
    with pytest.raises(XlvlmError) as info:
        read_vqav2(qpath, apath, image_root=tmp_path / "images")
    assert "cannot tell the split" in one_line(info) and "questions.json" in one_line(info)
    with pytest.raises(XlvlmError) as info:
        read_vqav2(qpath, apath, image_root=tmp_path / "images", split="dev")
    assert "unknown split 'dev'" in one_line(info)
    with pytest.raises(XlvlmError) as info:
        read_vqav2(qpath, apath, image_root=tmp_path / "images", split="val", prompt="Answer:")
    assert "lacks '{question}'" in one_line(info)
    with pytest.raises(XlvlmError) as info:
        read_vqav2(qpath, tmp_path / "nope.json", image_root=tmp_path / "images", split="val")
    assert "nope.json: VQAv2 annotations file not found" in one_line(info)


# ---------------------------------------------------------------- folder

def test_folder_reads_every_image_sorted(tmp_path):
    folder = tmp_path / "pics"
    write_image(folder / "b.png")
    write_image(folder / "a.JPG")
    write_image(folder / "sub" / "c.png")
    write_image(folder / ".hidden.png")
    (folder / "notes.txt").write_text("x")
    samples = load_samples(folder, prompt="What is this?")
    assert [s["id"] for s in samples] == ["a.JPG", "b.png"]
    assert samples[0] == {"id": "a.JPG", "image": str((folder / "a.JPG").resolve()), "prompt": "What is this?"}
    assert [s["id"] for s in read_folder(folder, recursive=True)] == ["a.JPG", "b.png", "sub/c.png"]
    assert read_folder(folder)[0]["prompt"] == "Describe the image in one sentence."


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(XlvlmError) as info:
        read_folder(tmp_path / "empty")
    assert "no image files" in one_line(info)
    with pytest.raises(XlvlmError) as info:
        read_folder(tmp_path / "absent")
    assert "image folder not found" in one_line(info)


# ---------------------------------------------------------------- JSONL and dispatch

def test_jsonl_relative_images_resolve_against_the_file(tmp_path):
    data = tmp_path / "data"
    write_image(data / "imgs" / "x.png")
    path = data / "samples.jsonl"
    path.write_text(json.dumps({"id": 1, "image": "imgs/x.png", "prompt": "Is it red?", "answer": "yes", "answer_type": "yes/no"}) + "\n\n")
    (sample,) = load_samples(path)
    assert sample == {"id": "1", "image": str((data / "imgs" / "x.png").resolve()), "prompt": "Is it red?", "answer": "yes", "answer_type": "yes/no"}


@pytest.mark.parametrize("lines, fragment", [
    (['{"id": 1, "image": "x.png"'], ":1: malformed JSON"),
    (['{"id": 1, "image": "x.png", "prompt": "p"}', '{"id": 2, "image": "x.png"}'], ":2: missing field 'prompt'"),
    (['[1, 2]'], ":1: expected a JSON object"),
    (['{"id": 1, "image": "x.png", "prompt": "p"}'] * 2, ":2: duplicate id '1'"),
    ([""], "no samples in file"),
    (['{"id": 1, "image": "x.png", "prompt": 5}'], ":1: field 'prompt' should be a non-empty string"),
    (['{"id": 1, "image": "", "prompt": "p"}'], ":1: field 'image' should be a non-empty string"),
])
def test_jsonl_errors(tmp_path, lines, fragment):
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(XlvlmError) as info:
        load_samples(path)
    assert fragment in one_line(info) and str(path) in one_line(info)


def test_dispatch_errors(tmp_path):
    for spec, fragment in [
        (tmp_path / "missing.jsonl", "missing.jsonl: data file not found"),
        (tmp_path / "nothing", "data not found; give a .jsonl file"),
        ("easyvqa:valid", "unknown split 'valid'"),
    ]:
        with pytest.raises(XlvlmError) as info:
            load_samples(spec)
        assert fragment in one_line(info)
    other = tmp_path / "x.csv"
    other.write_text("id,image\n")
    with pytest.raises(XlvlmError) as info:
        load_samples(other)
    assert "unknown data format" in one_line(info)
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": 1, "image": "x.png", "prompt": "p"}\n')
    with pytest.raises(XlvlmError) as info:
        load_samples(path, image_root=tmp_path)
    assert "option 'image_root' does not apply to jsonl data" in one_line(info)
    assert load_samples(path, prompt=None)[0]["id"] == "1"
