"""hf: data (Hugging Face datasets): presets, sources, streaming, and hostile rows."""

import sys

import pytest

from tests.data.hfdata import ROWS, datasets, hf_cache, png, pope_rows, table, write_parquet  # noqa: F401
from xlvlm.data import check_images, load_image, load_samples
from xlvlm.data.images import EncodedImage
from xlvlm.errors import XlvlmError


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def fields(samples):
    return [{k: v for k, v in s.items() if k != "image"} for s in samples]


def test_pope_preset_puts_label_and_split_where_the_pope_task_reads_them(tmp_path):
    path = write_parquet(tmp_path / "pope.parquet", pope_rows())
    samples = load_samples(f"hf:{path}", preset="pope", prompt="{question} Answer yes or no.")
    assert [s["id"] for s in samples] == ["0", "1", "2", "3", "4", "5"]
    first = samples[1]
    assert first["label"] == first["answer"] == "no" and first["answer_type"] == "yes/no"
    assert first["split"] == "popular" and first["question"] == "Is there a cat in the image?"
    assert first["prompt"] == "Is there a cat in the image? Answer yes or no."
    assert isinstance(first["image"], EncodedImage) and first["image"].read() == png(1)
    assert first["image"].label == f"hf:{path}:train row 1"


def test_vqav2_and_karpathy_presets(tmp_path):
    vqa = load_samples(f"hf:{write_parquet(tmp_path / 'vqa.parquet', ROWS['vqav2']())}", preset="vqav2")
    assert vqa[2]["id"] == "1002" and vqa[2]["answer"] == "color2" and vqa[2]["answers"] == ["color2"] * 3
    assert vqa[2]["answer_type"] == "other" and vqa[2]["image_id"] == 102 and vqa[2]["prompt"] == "What color is shape 2?"
    coco = load_samples(f"hf:{write_parquet(tmp_path / 'coco.parquet', ROWS['coco-karpathy']())}", preset="coco-karpathy")
    assert coco[1]["id"] == "501" and coco[1]["captions"] == ["A shape number 1.", "Picture 1."]
    assert coco[1]["answer"] == "A shape number 1." and coco[1]["prompt"] == "Describe the image in one sentence."
    assert load_image(coco[3]["image"]).size == (33, 26)


def test_save_to_disk_folder_arrow_and_streaming_give_the_same_samples(tmp_path):
    rows = pope_rows()
    write_parquet(tmp_path / "pope.parquet", rows)
    table(rows).save_to_disk(str(tmp_path / "saved"))
    table(rows).train_test_split(test_size=2, shuffle=False).save_to_disk(str(tmp_path / "splits"))
    reference = load_samples(f"hf:{tmp_path / 'pope.parquet'}", preset="pope")
    for spec, streaming in [("saved", False), ("saved", True), ("pope.parquet", True),
                            ("saved/data-00000-of-00001.arrow", False)]:
        samples = load_samples(f"hf:{tmp_path / spec}", preset="pope", streaming=streaming or None)
        assert fields(samples) == fields(reference)
        assert [s["image"].read() for s in samples] == [png(i) for i in range(6)]
    test = load_samples(f"hf:{tmp_path / 'splits'}:test", preset="pope")
    assert [s["id"] for s in test] == ["4", "5"]
    with pytest.raises(XlvlmError) as err:
        load_samples(f"hf:{tmp_path / 'splits'}", preset="pope")
    assert "has several splits (it has train, test); name one" in one_line(err)


@pytest.mark.parametrize("source", ["pope.parquet", "saved"])
def test_streaming_reads_rows_in_any_order(tmp_path, source):
    table(pope_rows()).to_parquet(str(tmp_path / "pope.parquet"), batch_size=2)  # row groups of 2 rows
    table(pope_rows()).save_to_disk(str(tmp_path / "saved"))
    samples = load_samples(f"hf:{tmp_path / source}", preset="pope", streaming=True)
    for i in (4, 5, 1, 0, 5, 3, 2):  # behind the stream or the row group: read again
        assert samples[i]["image"].read() == png(i)


def test_columns_default_columns_and_image_paths(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(png(0))
    path = write_parquet(tmp_path / "plain.parquet", {"qid": [7], "q": ["What is it?"], "file": ["imgs/a.png"]})
    [sample] = load_samples(f"hf:{path}", columns="id=qid, prompt=q, image=file")
    assert sample == {"id": "7", "prompt": "What is it?", "question": "What is it?", "image": str(tmp_path / "imgs" / "a.png")}
    path = write_parquet(tmp_path / "default.parquet", {"question": ["Q?"], "answer": ["A"], "image": [{"bytes": png(0), "path": None}]})
    [sample] = load_samples(f"hf:{path}")
    assert (sample["id"], sample["prompt"], sample["answer"]) == ("0", "Q?", "A")  # no id column: the row number
    merged = load_samples(f"hf:{write_parquet(tmp_path / 'p.parquet', pope_rows())}", preset="pope", columns="split=image_source")
    assert merged[0]["split"] == "COCO_val2014_000000000000"


def test_struct_column_without_image_feature(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "raw.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "prompt": ["x", "y"],
                             "image": [{"bytes": png(0), "path": None}, {"bytes": png(1), "path": "b.png"}]}), path)
    samples = load_samples(f"hf:{path}")
    assert [s["image"].read() for s in samples] == [png(0), png(1)]


@pytest.mark.parametrize("spec, options, expected", [
    ("hf:{tmp}/pope.parquet", dict(columns="prompt=text"), "pope.parquet:train: no column 'text' for field 'prompt' (it has id, question_id"),
    ("hf:{tmp}/pope.parquet", dict(preset="gqa"), "preset 'gqa' is unknown; use one of pope, vqav2, coco-karpathy"),
    ("hf:{tmp}/pope.parquet", dict(columns="image"), "columns: 'image' is not FIELD=COLUMN"),
    ("hf:{tmp}/pope.parquet:test", {}, "has no split 'test' (it has train)"),
    ("hf:{tmp}/nothing*.parquet", {}, "no file matches this pattern"),
    ("hf:lmms-lab/POPE:test", {}, "hf:lmms-lab/POPE: no such local file or folder, and HF_HUB_OFFLINE is set"),
    ("{tmp}/pope.parquet", {}, "prefix it with coco:, vqav2:, pope:, mmsafety: or hf:"),
    ("hf:{tmp}/missing.parquet", {}, "missing.parquet: file or folder not found; check the path"),
    ("hf:{tmp}/pope.parquet", dict(annotations="x.json"), "option 'annotations' does not apply to hf data"),
])
def test_one_line_errors(tmp_path, monkeypatch, spec, options, expected):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_parquet(tmp_path / "pope.parquet", pope_rows())
    with pytest.raises(XlvlmError) as err:
        load_samples(spec.format(tmp=tmp_path), **options)
    assert expected in one_line(err)


def test_missing_datasets_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(XlvlmError) as err:
        load_samples(f"hf:{tmp_path}/x.parquet")
    assert one_line(err) == "hf: data needs the `datasets` library; install it with pip install 'xlvlm[hub]'"


def test_hostile_rows_are_the_errors_and_skips_of_other_readers(tmp_path):
    import zlib

    rows = pope_rows(4)
    bomb = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", (20000).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00")
    bomb += _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b"")
    rows["image"][1] = {"bytes": b"not an image at all", "path": None}
    rows["image"][2] = {"bytes": bomb, "path": None}
    rows["image"][3] = None
    path = write_parquet(tmp_path / "bad.parquet", rows)
    samples = load_samples(f"hf:{path}", preset="pope")
    good, skipped = check_images(samples, skip_bad=True)
    assert [s["id"] for s in good] == ["0"]
    reasons = [s["reason"] for s in skipped]
    assert reasons[0].startswith(f"hf:{path}:train row 1: corrupt or unreadable image")
    assert reasons[1].startswith(f"hf:{path}:train row 2: image too large")
    assert reasons[2].startswith(f"hf:{path}:train row 3 column 'image': no image in this row")
    assert [s["image"] for s in skipped][0] == f"hf:{path}:train row 1"
    with pytest.raises(XlvlmError) as err:
        check_images(samples)
    assert "row 1: corrupt or unreadable image" in one_line(err) and "--skip-bad" in one_line(err)


def _chunk(kind: bytes, data: bytes) -> bytes:
    import zlib

    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def test_duplicate_ids_and_missing_values(tmp_path):
    rows = pope_rows(4)
    rows["id"][3] = "1"
    with pytest.raises(XlvlmError) as err:
        load_samples(f"hf:{write_parquet(tmp_path / 'dup.parquet', rows)}", preset="pope")
    assert one_line(err).endswith("train row 3: duplicate id '1' (also row 1); ids must be unique: map another column "
                                  "with --columns id=COLUMN")
    rows = pope_rows(4)
    rows["answer"][2] = "maybe"
    with pytest.raises(XlvlmError) as err:
        load_samples(f"hf:{write_parquet(tmp_path / 'label.parquet', rows)}", preset="pope")
    assert "train row 2: field 'label' should be 'yes' or 'no', got 'maybe'" in one_line(err)
    rows = pope_rows(4)
    rows["question"][0] = None
    with pytest.raises(XlvlmError) as err:
        load_samples(f"hf:{write_parquet(tmp_path / 'none.parquet', rows)}", preset="pope")
    assert "train row 0: field 'prompt' should be a non-empty string, got None" in one_line(err)


def test_unreachable_hub_names_hf_hub_offline(monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'lmms-lab/POPE' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(XlvlmError) as err:
        load_samples("hf:lmms-lab/POPE:test", preset="pope")
    assert one_line(err).startswith("hf:lmms-lab/POPE: the hub cannot be reached (Couldn't reach")
    assert "set HF_HUB_OFFLINE=1" in one_line(err)
