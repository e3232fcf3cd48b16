"""The store manifest as dataclasses: what is written reads back the same, and older manifests still read."""

import json

import pytest
import torch

from xlvlm import FeatureStore
from xlvlm.errors import XlvlmError
from xlvlm.features.manifest import Manifest, ShardEntry, StoreSettings


def _store(path, samples):
    rows = [dict(s, id=f"q{i}") for i, s in enumerate(samples[:3])]
    return FeatureStore.from_tensors(path, {"final": torch.randn(3, 4)}, rows, model="m")


def test_a_written_manifest_reads_back_unchanged(tmp_path, samples):
    store = _store(tmp_path / "s", samples)
    on_disk = json.loads((tmp_path / "s" / "manifest.json").read_text())
    manifest = Manifest.from_dict(on_disk, tmp_path / "manifest.json")
    assert manifest.to_dict() == on_disk
    assert isinstance(store.manifest.shards[0], ShardEntry) and store.settings == StoreSettings(
        model="m", family="", num_layers=None, hidden_size=4, layers=["final"], selector="custom", rows_per_sample=1,
        teacher_forcing=False, generation=None, dtype="float32")


def test_an_older_manifest_still_reads_and_keeps_its_other_fields(tmp_path, samples):
    """Stores written before: a first_sample per shard (never read, now dropped), no prompt_format,
    and fields of a distributed run that identify nothing (kept as written)."""
    _store(tmp_path / "s", samples)
    path = tmp_path / "s" / "manifest.json"
    old = json.loads(path.read_text())
    old["shards"][0]["first_sample"] = 0
    old.pop("prompt_format", None)
    old.update(world_size=1, ranks=[{"folder": "rank-00000-of-00001", "first_input": 0, "n_input": 3}])
    path.write_text(json.dumps(old))
    store = FeatureStore(tmp_path / "s")
    assert store.features("final").shape == (3, 4) and store.settings.prompt_format is None
    assert store.manifest.extra["world_size"] == 1 and "first_sample" not in store.manifest.shards[0].to_dict()


@pytest.mark.parametrize("field, value, message", [
    ("status", "done", "field 'status' is 'done'"),
    ("hidden_size", True, "field 'hidden_size' is not a positive integer"),
    ("layers", "final", "field 'layers' is not a list"),
    ("shards", [{"file": "../x"}], "shards[0] field 'samples_file' is missing"),
])
def test_a_bad_field_is_one_line_naming_it(tmp_path, samples, field, value, message):
    _store(tmp_path / "s", samples)
    path = tmp_path / "s" / "manifest.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), **{field: value})))
    with pytest.raises(XlvlmError, match="manifest.json: " + message.replace("[", r"\[").replace("]", r"\]")) as info:
        FeatureStore(tmp_path / "s")
    assert "\n" not in str(info.value) and "re-extract" in str(info.value)
