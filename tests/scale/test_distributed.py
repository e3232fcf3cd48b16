"""Distributed extraction: ranks write their own sub-stores, FeatureStore reads one store equal
to a single-process run; resuming is per rank."""

import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import xlvlm
from xlvlm.data import read_jsonl
from xlvlm.errors import XlvlmError
from xlvlm.features import run as run_module
from xlvlm.features.distributed import DistributedContext, extract_distributed, merge_ranks, rank_folder, rank_range
from xlvlm.features.manifest import StoreSettings
from xlvlm.features.store import StoreWriter
from tests.scale.conftest import assert_same_store, write_jsonl, write_store

OPTIONS = dict(layers=[1, "final"], select="all", batch_size=2)


@given(n=st.integers(1, 300), batch=st.integers(1, 12), world=st.integers(1, 9))
@settings(max_examples=200, deadline=None, database=None)
def test_rank_ranges_partition_the_samples_in_whole_batches(n, batch, world):
    ranges = [rank_range(n, batch, r, world) for r in range(world)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    for (start, stop), (next_start, _) in zip(ranges, ranges[1:]):
        assert start <= stop == next_start
    assert all(start % batch == 0 for start, _ in ranges)
    sizes = [-(-(stop - start) // batch) for start, stop in ranges]  # batches per rank
    assert max(sizes) - min(sizes) <= 1


def test_context_from_environment():
    assert DistributedContext.from_env({}) is None
    assert DistributedContext.from_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    context = DistributedContext.from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert context == DistributedContext(3, 4, 1) and context.device("cuda") == "cuda:1"
    assert context.device("cpu") == "cpu" and context.device("cuda:0") == "cuda:0"
    for bad in ({"WORLD_SIZE": "two"}, {"WORLD_SIZE": "2", "RANK": "2"}):
        with pytest.raises(XlvlmError):
            DistributedContext.from_env(bad)


class _Parked(Exception):
    """A rank reached the barrier where it waits for rank 0's merge."""


@pytest.fixture
def fake_group(monkeypatch, vlm_of):
    """torch.distributed as one rank sees a group whose other ranks agree: the ranks of a
    launch then run one after another in this process, rank 0 (which merges) last; the
    others stop at the barrier before the merge."""
    import torch.distributed as dist

    vlm_of("llava")  # build and load before faking: saving a model asks torch.distributed for the rank
    state = {"rank": 0, "barriers": 0}

    def gather(views, value):
        views[:] = [value] * len(views)

    def barrier(*args, **kwargs):
        state["barriers"] += 1
        if state["rank"] != 0 and state["barriers"] == 2:
            raise _Parked

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "all_gather_object", gather)
    monkeypatch.setattr(dist, "barrier", barrier)
    monkeypatch.setattr(dist, "get_backend", lambda *a, **k: "gloo")
    return state


def _run_ranks(group, vlm, samples, out, world, order=None, **options):
    store = None
    for rank in order or [*range(1, world), 0]:
        group.update(rank=rank, barriers=0)
        try:
            store = extract_distributed(vlm, samples, out=out, context=DistributedContext(rank, world, rank),
                                        progress=False, **{**OPTIONS, **options})
        except _Parked:
            pass
    return store


def _die_on_second_batch(monkeypatch):
    """Make extraction raise KeyboardInterrupt on its second batch; returns the real function."""
    real = run_module.extract_batch_teacher_forced
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "extract_batch_teacher_forced", dying)
    return real


def test_ranks_merge_into_the_single_process_store_and_resume_per_rank(vlm_of, samples, tmp_path, monkeypatch,
                                                                         fake_group):
    vlm = vlm_of("llava")
    reference = xlvlm.extract(vlm, samples, out=tmp_path / "one", progress=False, **OPTIONS)
    # Rank 2 of 3 (4 samples, batches of 2) is interrupted after its first batch; the others have not started.
    real = _die_on_second_batch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _run_ranks(fake_group, vlm, samples, tmp_path / "dist", 3, order=[2], shard_samples=1)
    monkeypatch.setattr(run_module, "extract_batch_teacher_forced", real)
    part = rank_folder(tmp_path / "dist", 2, 3)
    part_store = xlvlm.FeatureStore(part, allow_partial=True)
    assert len(part_store) == 2 and not part_store.complete
    with pytest.raises(XlvlmError, match="unfinished distributed extraction"):
        xlvlm.extract(vlm, samples, out=tmp_path / "dist", progress=False, **OPTIONS)
    kept = (part / "shard-00000.safetensors").stat().st_mtime_ns

    merged = _run_ranks(fake_group, vlm, samples, tmp_path / "dist", 3, shard_samples=1)
    assert (part / "shard-00000.safetensors").stat().st_mtime_ns == kept  # resumed, not redone
    assert merged.manifest.extra["world_size"] == 3 and [r["n_input"] for r in merged.manifest.extra["ranks"]] == [2, 2, 4]
    assert_same_store(merged, reference)
    merged.verify()
    assert_same_store(xlvlm.FeatureStore(tmp_path / "dist", verify_checksums=True), reference)
    # A finished store is reused, with or without ranks; other settings are refused.
    assert_same_store(xlvlm.extract(vlm, samples, out=tmp_path / "dist", progress=False, **OPTIONS), reference)
    assert_same_store(_run_ranks(fake_group, vlm, samples, tmp_path / "dist", 2), reference)
    with pytest.raises(XlvlmError, match="made with selector"):
        _run_ranks(fake_group, vlm, samples, tmp_path / "dist", 2, select="last-prompt")


def test_more_ranks_than_batches(vlm_of, samples, tmp_path, fake_group):
    vlm = vlm_of("llava")
    reference = xlvlm.extract(vlm, samples[:3], out=tmp_path / "one", progress=False, **OPTIONS)
    merged = _run_ranks(fake_group, vlm, samples[:3], tmp_path / "dist", 4)
    assert [r["n_input"] for r in merged.manifest.extra["ranks"]] == [0, 2, 0, 1]
    assert_same_store(merged, reference)


def test_merge_refuses_unfinished_or_mismatched_ranks(tmp_path):
    ids = [f"x{i}" for i in range(4)]
    write_store(rank_folder(tmp_path, 0, 2), {"final": torch.zeros(2, 3)}, 1, ids=ids[:2])
    settings = StoreSettings(model="", family="", num_layers=None, hidden_size=3, layers=["final"], selector="custom",
                             rows_per_sample=1, teacher_forcing=False, generation=None, dtype="float32")
    StoreWriter(rank_folder(tmp_path, 1, 2), settings, ids[2:])
    with pytest.raises(XlvlmError, match="rank 1 has not finished"):
        merge_ranks(tmp_path, 2, ids, batch_size=1)
    write_store(rank_folder(tmp_path / "b", 0, 2), {"final": torch.zeros(2, 3)}, 1, ids=ids[:2])
    write_store(rank_folder(tmp_path / "b", 1, 2), {"final": torch.zeros(2, 4)}, 1, ids=ids[2:])
    with pytest.raises(XlvlmError, match="hidden_size=4"):
        merge_ranks(tmp_path / "b", 2, ids, batch_size=1)
    with pytest.raises(XlvlmError, match="needs a process group"):
        extract_distributed(None, [{"id": "a"}], out=tmp_path / "c", context=DistributedContext(0, 2, 0))


def test_torchrun_two_cpu_processes_one_store(tiny_dir, samples, tmp_path, vlm_of, monkeypatch):
    """The real thing: `xlvlm extract` under torchrun, 2 processes, gloo; rank 1 resumes the
    partial sub-store that an interrupted run left."""
    data = write_jsonl(tmp_path / "d.jsonl", samples)
    rows = read_jsonl(data)
    vlm = vlm_of("llava")
    reference = xlvlm.extract(vlm, rows, out=tmp_path / "one", progress=False, **OPTIONS)
    out = tmp_path / "dist"
    start, stop = rank_range(len(rows), 2, 1, 2)
    real = _die_on_second_batch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        xlvlm.extract(vlm, rows[start:stop], out=rank_folder(out, 1, 2), progress=False, **OPTIONS)
    monkeypatch.setattr(run_module, "extract_batch_teacher_forced", real)

    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "xlvlm.cli", "extract", "--model", str(tiny_dir("llava")), "--data", str(data),
               "--layers", "1,final", "--select", "all", "--batch-size", "2", "--out", str(out), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("wrote") == 1 and "8 samples" in result.stdout
    merged = xlvlm.FeatureStore(out)
    assert [shard.file.split("/")[0] for shard in merged.manifest.shards] == [
        "rank-00000-of-00002", "rank-00001-of-00002", "rank-00001-of-00002"]  # rank 1: kept shard + resumed one
    assert_same_store(merged, reference)
    merged.verify()
