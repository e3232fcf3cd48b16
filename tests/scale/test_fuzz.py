"""Fuzzed readers: a store manifest (and shard metadata), JSONL samples, COCO Karpathy and
VQAv2 files. Whatever the bytes, the only exception out is a one-line XlvlmError."""

import json

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from xlvlm import FeatureStore
from xlvlm.data import read_coco_karpathy, read_jsonl, read_vqav2
from xlvlm.errors import XlvlmError
from tests.scale.conftest import write_store

FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
texts = st.text(max_size=16) | st.sampled_from(["", "a.png", "../x", "/abs", "a\x00b", "val2014", "test", "x" * 300])


def _maybe(strategy):
    """Usually the right kind of value, sometimes anything."""
    return st.one_of(strategy, strategy, json_values)


@st.composite
def _mostly_valid(draw, valid, keys):
    """A valid record (dict) from ``valid`` with 0 to 2 fields deleted or replaced by anything."""
    record = dict(draw(valid))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        key = draw(st.sampled_from(keys))
        if draw(st.booleans()):
            record.pop(key, None)
        else:
            record[key] = draw(json_values | texts)
    return record


def _expect_only_xlvlm_errors(action):
    try:
        action()
        event("read")  # shown by --hypothesis-show-statistics: how often the input was accepted
    except XlvlmError as exc:
        assert "\n" not in str(exc) and str(exc)
        event("XlvlmError")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


# ---- feature store manifest -----------------------------------------------------------------
@pytest.fixture(scope="module")
def store_files(folder):
    path = folder / "store"
    write_store(path, {"final": torch.randn(5, 4), "3": torch.randn(5, 4)}, shard_rows=3,
                present=[True, False, True, True, True])
    return path, json.loads((path / "manifest.json").read_text())


def _read_everything(path):
    store = FeatureStore(path)
    len(store), repr(store), store.ids, store.present, store.row_sample
    for layer in list(store.layers)[:3] + ["final", -1, "nope"]:
        try:
            store.features(layer, present_only=True)
            list(store.iter_rows(layer, batch_rows=2, present_only=True))
        except XlvlmError as exc:
            assert "\n" not in str(exc)
    store.verify()
    FeatureStore(path, verify_checksums=True).features("final")


shard_keys = st.sampled_from(["file", "samples_file", "n_samples", "n_rows", "bytes", "sha256", "samples_sha256",
                              "first_sample", "sample_offset", "other"])
top_keys = st.sampled_from(["format", "schema_version", "layers", "shards", "status", "hidden_size", "num_layers",
                            "model", "selector", "skipped", "n_skipped_in_shards", "rows_per_sample", "other"])
edits = st.tuples(st.booleans(), st.integers(0, 3), st.one_of(top_keys, shard_keys), st.booleans(),
                  _maybe(st.integers(-2, 12) | texts))


@given(changes=st.lists(edits, min_size=1, max_size=3))
@FUZZ
def test_mutated_manifest(store_files, changes):
    path, manifest = store_files
    mutated = json.loads(json.dumps(manifest))
    for in_shard, index, key, delete, value in changes:
        target = mutated
        if in_shard and isinstance(mutated.get("shards"), list) and mutated["shards"]:
            target = mutated["shards"][index % len(mutated["shards"])]
        if not isinstance(target, dict):
            continue
        if delete:
            target.pop(key, None)
        else:
            target[key] = value
    (path / "manifest.json").write_text(json.dumps(mutated))
    try:
        _expect_only_xlvlm_errors(lambda: _read_everything(path))
    finally:
        (path / "manifest.json").write_text(json.dumps(manifest))


@given(content=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
@FUZZ
def test_arbitrary_manifest_bytes(store_files, content):
    path, manifest = store_files
    (path / "manifest.json").write_bytes(content)
    try:
        _expect_only_xlvlm_errors(lambda: _read_everything(path))
    finally:
        (path / "manifest.json").write_text(json.dumps(manifest))


@given(content=st.binary(max_size=200) | st.lists(json_values.map(json.dumps), max_size=3).map(
    lambda lines: "\n".join(lines).encode()))
@FUZZ
def test_arbitrary_shard_metadata(store_files, content):
    """Shard metadata edited after the fact (the manifest's checksums are off then, so only
    the size/shape/record checks stand between the reader and the bytes)."""
    path, _ = store_files
    meta = path / "shard-00001.jsonl"
    original = meta.read_bytes()
    meta.write_bytes(content)
    try:
        def read():
            store = FeatureStore(path)
            store.ids, store.present
            store.features("final", present_only=True)
            list(store.iter_rows("final", 3, present_only=True))

        _expect_only_xlvlm_errors(read)
    finally:
        meta.write_bytes(original)


# ---- JSONL samples --------------------------------------------------------------------------
names = st.text(min_size=1, max_size=12)
records = _mostly_valid(st.fixed_dictionaries(
    {"id": st.integers() | names, "image": names, "prompt": names},
    optional={"answer": json_values, "answer_type": names}), ["id", "image", "prompt", "answer"])
jsonl_lines = st.lists(st.one_of(records.map(json.dumps), records.map(json.dumps), json_values.map(json.dumps),
                                 st.text(max_size=20)),
                       max_size=4).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass"))


@given(content=st.binary(max_size=300) | jsonl_lines)
@FUZZ
def test_jsonl_samples(folder, content):
    path = folder / "samples.jsonl"
    path.write_bytes(content)
    _expect_only_xlvlm_errors(lambda: read_jsonl(path))


# ---- COCO Karpathy ---------------------------------------------------------------------------
sentences = _mostly_valid(st.fixed_dictionaries({"raw": names}), ["raw"])
coco_images = _mostly_valid(st.fixed_dictionaries(
    {"filename": names, "split": st.sampled_from(["test", "train", "val", "restval"]),
     "cocoid": st.integers(0, 50) | names, "sentences": st.lists(sentences, max_size=3)},
    optional={"filepath": names, "imgid": st.integers()}), ["filepath", "filename", "split", "cocoid", "sentences"])
coco_files = st.one_of(json_values, _mostly_valid(st.fixed_dictionaries({"images": st.lists(coco_images, max_size=4)}),
                                                  ["images"]))


@given(content=st.binary(max_size=200) | coco_files.map(lambda v: json.dumps(v).encode()),
       split=st.sampled_from(["test", "all", "train+val", "nope"]))
@FUZZ
def test_coco_karpathy(folder, content, split):
    path = folder / "dataset_coco.json"
    path.write_bytes(content)
    _expect_only_xlvlm_errors(lambda: read_coco_karpathy(path, image_root=folder, split=split))


# ---- VQAv2 -----------------------------------------------------------------------------------
questions = _mostly_valid(st.fixed_dictionaries(
    {"question_id": st.integers(0, 10**6) | names, "image_id": st.integers(-5, 10**13), "question": names}),
    ["question_id", "image_id", "question"])
answers = _mostly_valid(st.fixed_dictionaries(
    {"question_id": st.integers(0, 5), "answers": st.lists(_mostly_valid(st.fixed_dictionaries({"answer": names}),
                                                                         ["answer"]), max_size=3),
     "multiple_choice_answer": names, "answer_type": st.sampled_from(["yes/no", "number", "other"])},
    optional={"question_type": json_values}), ["question_id", "answers", "multiple_choice_answer", "answer_type"])
vqa_questions = st.one_of(json_values, _mostly_valid(st.fixed_dictionaries(
    {"questions": st.lists(questions, max_size=4)},
    optional={"data_subtype": st.sampled_from(["val2014", "train2014", "test-dev2015", "val"])}),
    ["questions", "data_subtype"]))
vqa_annotations = st.one_of(json_values, _mostly_valid(st.fixed_dictionaries(
    {"annotations": st.lists(answers, max_size=6)}), ["annotations"]))


@given(question_file=st.binary(max_size=100) | vqa_questions.map(lambda v: json.dumps(v).encode()),
       annotation_file=st.none() | st.none() | st.binary(max_size=100)
       | vqa_annotations.map(lambda v: json.dumps(v).encode()),
       split=st.sampled_from([None, None, "val", "test-dev", "bogus"]),
       prompt=st.sampled_from(["{question}", "Q: {question} A:", "no placeholder"]))
@FUZZ
def test_vqav2(folder, question_file, annotation_file, split, prompt):
    questions_path = folder / "v2_OpenEnded_mscoco_val2014_questions.json"
    questions_path.write_bytes(question_file)
    annotations_path = None
    if annotation_file is not None:
        annotations_path = folder / "annotations.json"
        annotations_path.write_bytes(annotation_file)
    _expect_only_xlvlm_errors(lambda: read_vqav2(questions_path, annotations=annotations_path, image_root=folder,
                                                 split=split, prompt=prompt))


@pytest.mark.parametrize("content", ["[" * 100_000, "{\"a\": " + "1" * 5000 + "}", "\ufeff{}", "[1, 2"])
def test_pathological_json_in_every_reader(folder, store_files, content):
    """Nesting past the recursion limit and integers past int-to-str limits raise RecursionError
    and ValueError inside json, not JSONDecodeError."""
    path, manifest = store_files
    readers = []
    for name, read in (("x.jsonl", read_jsonl), ("coco.json", lambda p: read_coco_karpathy(p, image_root=folder)),
                       ("v2_val2014_questions.json", lambda p: read_vqav2(p, image_root=folder))):
        (folder / name).write_text(content)
        readers.append(lambda read=read, name=name: read(folder / name))
    (path / "manifest.json").write_text(content)
    readers.append(lambda: FeatureStore(path))
    try:
        for read in readers:
            with pytest.raises(XlvlmError) as info:
                read()
            assert "\n" not in str(info.value)
    finally:
        (path / "manifest.json").write_text(json.dumps(manifest))
