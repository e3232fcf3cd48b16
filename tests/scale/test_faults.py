"""Faults lose nothing: SIGKILL at random points, a full disk, damaged shards."""

import errno
import faulthandler
import json
import multiprocessing
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from tqdm.auto import tqdm

import xlvlm
from xlvlm.cli import main
from xlvlm.data import read_jsonl
from xlvlm.errors import XlvlmError
from xlvlm.features import store as store_module
from tests.scale.conftest import assert_same_store, write_jsonl

OPTIONS = dict(layers=[1, "final"], select="all", batch_size=1, shard_samples=1)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks the test process")


def _forked_extract(vlm, samples, out):
    """Start extraction in a forked child (the model is already loaded: no start-up cost)."""

    def work():
        torch.set_num_threads(1)  # no OpenMP pool in a forked child
        # tqdm's lock is a semaphore shared with every forked process: a child killed while
        # holding it would block the next one. A process of its own (the CLI) has its own.
        tqdm.set_lock(threading.RLock())
        faulthandler.dump_traceback_later(60, exit=True)  # a hang shows where, and fails
        xlvlm.extract(vlm, samples, out=out, progress=False, **OPTIONS)

    child = multiprocessing.get_context("fork").Process(target=work, daemon=True)
    child.start()
    return child


def _shards_listed(out) -> int:
    try:
        return len(json.loads((out / "manifest.json").read_text())["shards"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.fixture(scope="module")
def uninterrupted(vlm_of, samples, tmp_path_factory):
    out = tmp_path_factory.mktemp("faults") / "reference"
    child = _forked_extract(vlm_of("llava"), samples, out)
    child.join(120)
    assert child.exitcode == 0
    return xlvlm.FeatureStore(out)


@pytest.mark.parametrize("seed", range(5))
def test_sigkill_at_random_points_then_resume(seed, vlm_of, samples, uninterrupted, tmp_path):
    vlm = vlm_of("llava")
    rng = random.Random(seed)
    out = tmp_path / "store"
    for _ in range(2):  # killed twice, then left to finish
        target = rng.randint(0, len(samples) - 1)
        child = _forked_extract(vlm, samples, out)
        deadline = time.monotonic() + 60
        while child.is_alive() and _shards_listed(out) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.05))  # somewhere inside the next batch, shard or manifest write
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        if (out / "manifest.json").exists():  # what a killed run leaves is a valid prefix
            partial = xlvlm.FeatureStore(out, allow_partial=True)
            partial.verify()
            n = len(partial)
            assert partial.ids == uninterrupted.ids[:n]
            rows = int((uninterrupted.row_sample < n).sum())
            assert torch.equal(partial.features("final"), uninterrupted.features("final")[:rows])
    child = _forked_extract(vlm, samples, out)
    child.join(120)
    assert child.exitcode == 0
    resumed = xlvlm.FeatureStore(out)
    assert resumed.complete
    assert_same_store(resumed, uninterrupted)
    resumed.verify()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_full_disk_keeps_earlier_shards_and_resumes(tiny_dir, vlm_of, samples, tmp_path, monkeypatch, capsys):
    import xlvlm.io

    data = write_jsonl(tmp_path / "d.jsonl", samples[:6])
    args = ["extract", "--model", str(tiny_dir("llava")), "--data", str(data), "--layers", "1,final",
            "--select", "all", "--batch-size", "1", "--shard-samples", "2", "--out", str(tmp_path / "s"), "--quiet"]
    real = xlvlm.io.save_file
    calls = {"n": 0}

    def filling(tensors, filename, metadata=None):
        calls["n"] += 1
        if calls["n"] == 2:  # the second shard: half of it fits, then the disk is full
            Path(filename).write_bytes(b"\0" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(xlvlm.io, "save_file", filling)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and "shard-00001.safetensors" in err
    assert "the 2 samples written before are intact" in err
    partial = xlvlm.FeatureStore(tmp_path / "s", allow_partial=True)
    assert not partial.complete and partial.ids == ["s0", "s1"]
    partial.verify()
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["manifest.json", "shard-00000.jsonl",
                                                                    "shard-00000.safetensors"]

    # The manifest cannot be written either: the store on disk still lists only whole shards.
    def full(path, obj):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(xlvlm.io, "save_file", real)
    monkeypatch.setattr(store_module, "atomic_write_json", full)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "manifest.json: cannot write" in err
    monkeypatch.undo()
    assert xlvlm.FeatureStore(tmp_path / "s", allow_partial=True).ids == ["s0", "s1"]

    assert main(args) == 0
    resumed = xlvlm.FeatureStore(tmp_path / "s")
    reference = xlvlm.extract(vlm_of("llava"), read_jsonl(data), out=tmp_path / "ref", progress=False,
                              **dict(OPTIONS, shard_samples=2))
    assert_same_store(resumed, reference)
    resumed.verify()


@pytest.fixture
def small_store(vlm_of, samples, tmp_path):
    xlvlm.extract(vlm_of("llava"), samples[:4], out=tmp_path / "s", progress=False,
                  **dict(OPTIONS, shard_samples=2))
    return tmp_path / "s"


def _one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


def test_altered_shard_is_named_by_checksum(small_store):
    shard = small_store / "shard-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x40  # same size, different value
    shard.write_bytes(bytes(data))
    # size checks alone cannot see it; the opt-out for huge stores skips only the checksums
    assert xlvlm.FeatureStore(small_store, verify_checksums=False).features("final").shape[0] > 0
    with pytest.raises(XlvlmError) as info:
        xlvlm.FeatureStore(small_store).features("final")  # checked by default, on first read
    assert "shard-00001.safetensors: checksum mismatch" in _one_line(info)
    with pytest.raises(XlvlmError) as info:
        xlvlm.FeatureStore(small_store).verify()
    assert "shard-00001.safetensors: checksum mismatch" in _one_line(info)
    with pytest.raises(XlvlmError) as info:
        xlvlm.FeatureStore(small_store, verify_checksums=True).features("final")
    assert "shard-00001.safetensors: checksum mismatch" in _one_line(info)
    checked = xlvlm.FeatureStore(small_store, verify_checksums=True)
    with pytest.raises(XlvlmError, match="shard-00001.safetensors: checksum"):
        list(checked.iter_rows("final", batch_rows=3))


def test_truncated_missing_or_edited_files_are_named(small_store):
    shard = small_store / "shard-00000.safetensors"
    shard.write_bytes(shard.read_bytes()[:-7])
    for read in (lambda s: s.verify(), lambda s: s.features(1), lambda s: list(s.iter_rows(1))):
        with pytest.raises(XlvlmError) as info:
            read(xlvlm.FeatureStore(small_store))
        assert "shard-00000.safetensors: size" in _one_line(info) and "truncated" in str(info.value)
    shard.unlink()
    with pytest.raises(XlvlmError, match="shard-00000.safetensors: shard missing"):
        xlvlm.FeatureStore(small_store).verify()
    meta = small_store / "shard-00001.jsonl"
    meta.write_text(meta.read_text().replace('"s3"', '"s9"'))
    with pytest.raises(XlvlmError, match="shard-00001.jsonl: checksum mismatch"):
        xlvlm.FeatureStore(small_store, verify_checksums=True).samples
    meta.write_text("{oops\n" + meta.read_text().splitlines()[1] + "\n")
    with pytest.raises(XlvlmError) as info:
        xlvlm.FeatureStore(small_store, verify_checksums=False).samples
    assert "shard-00001.jsonl:1: not a sample record" in _one_line(info)


def test_leftovers_of_killed_writes_do_not_block_a_rerun(vlm_of, samples, tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / ".manifest.json.k2j3.tmp").write_text("{")  # killed before the first manifest
    store = xlvlm.extract(vlm_of("llava"), samples[:2], out=out, progress=False, **OPTIONS)
    assert len(store) == 2 and sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(XlvlmError, match="not empty and is not a feature store"):
        xlvlm.extract(vlm_of("llava"), samples[:2], out=tmp_path / "other", progress=False)


def test_atomic_writes_get_the_permissions_of_a_plain_write(tmp_path):
    from xlvlm.io import atomic_save_tensors, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "report.html", "<p>hi</p>")
        atomic_save_tensors(tmp_path / "v.safetensors", {"x": torch.zeros(2)})
        with open(tmp_path / "plain.txt", "w") as handle:
            handle.write("hi")
    finally:
        os.umask(old)
    plain = (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert plain == 0o644
    for name in ("report.html", "v.safetensors"):
        assert (tmp_path / name).stat().st_mode & 0o777 == plain, name
    assert not list(tmp_path.glob(".*.tmp"))
