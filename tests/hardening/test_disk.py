"""Disk full, read-only folders and a file where a folder is expected: one line, nothing lost."""

import errno
import json
import subprocess
from contextlib import contextmanager

import pytest
import torch

import xlvlm
from xlvlm.data.jsonl import JsonlAppender


def _vector_and_data(tmp_path, samples, tiny_dir):
    vlm = xlvlm.load_vlm(tiny_dir("llava"))
    vector = xlvlm.SteeringVector({"1": torch.ones(vlm.hidden_size)})
    vector.save(tmp_path / "v.safetensors")
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(s) + "\n" for s in samples[:6]))
    return ["--model", tiny_dir("llava"), "--data", data, "--vector", tmp_path / "v.safetensors", "--batch-size", "2",
            "--max-new-tokens", "2", "--quiet"]


@contextmanager
def _small_filesystem(folder, size="64k", options=""):
    """A real tmpfs of ``size`` at ``folder`` (needs root and mount permission), unmounted after."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the fault-injection tests cover the same paths")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_steer_apply_disk_full_midway_keeps_the_old_file_and_what_was_generated(cli, tiny_dir, samples, tmp_path,
                                                                                 monkeypatch):
    args = _vector_and_data(tmp_path, samples, tiny_dir)
    out = tmp_path / "p.jsonl"
    out.write_text("old predictions\n")
    original, calls = JsonlAppender.write, []

    def write_then_fill_the_disk(self, records):
        calls.append(len(records))
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, records)

    monkeypatch.setattr(JsonlAppender, "write", write_then_fill_the_disk)
    code, _, err = cli(["steer", "apply", *args, "--out", out, "--overwrite"])
    assert code == 2 and len(err.splitlines()) == 1 and "no space left" in err and "p.jsonl.partial" in err, err
    assert out.read_text() == "old predictions\n"
    kept = [json.loads(line) for line in (tmp_path / "p.jsonl.partial").read_text().splitlines()]
    assert [r["id"] for r in kept] == [s["id"] for s in samples[:2]] and all("prediction" in r for r in kept)


def test_steer_apply_writes_as_it_goes_and_renames_at_the_end(cli, tiny_dir, samples, tmp_path):
    args = _vector_and_data(tmp_path, samples, tiny_dir)
    code, out, err = cli(["steer", "apply", *args, "--out", tmp_path / "p.jsonl"])
    assert code == 0, err
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 6 and not (tmp_path / "p.jsonl.partial").exists()


def test_steer_apply_on_a_real_full_disk(cli, tiny_dir, samples, tmp_path):
    args = _vector_and_data(tmp_path, samples, tiny_dir)
    data = tmp_path / "long.jsonl"  # records of ~1.6 kB: one batch of two fits in the page left, not three
    data.write_text("".join(json.dumps(dict(s, note="x" * 1500)) + "\n" for s in samples[:6]))
    args[args.index("--data") + 1] = data
    with _small_filesystem(tmp_path / "small", size="8k") as small:
        (small / "filler").write_bytes(b"x" * 4096)
        code, _, err = cli(["steer", "apply", *args, "--out", small / "p.jsonl"])
        assert code == 2 and "no space left" in err and len(err.splitlines()) == 1, err
        assert not (small / "p.jsonl").exists()
        kept = (small / "p.jsonl.partial").read_text().splitlines()
        assert [json.loads(line)["id"] for line in kept[:2]] == ["s0", "s1"]


@pytest.mark.parametrize("command", ["compute", "concepts"])
def test_full_and_read_only_output_folders_are_one_line(cli, samples, tmp_path, command):
    rows = [dict(samples[i], id=f"q{i}") for i in range(8)]
    g = torch.Generator().manual_seed(0)
    xlvlm.FeatureStore.from_tensors({"1": torch.rand(8, 64, generator=g)}, rows, path=tmp_path / "a")
    xlvlm.FeatureStore.from_tensors({"1": torch.rand(8, 64, generator=g) + 1}, rows, path=tmp_path / "b")

    def run(out):
        if command == "compute":
            return cli(["steer", "compute", "--source", tmp_path / "a", "--target", tmp_path / "b", "--layer", "1",
                        "--out", out / "v.safetensors"])
        return cli(["concepts", "--features", tmp_path / "a", "--layer", "1", "--method", "kmeans",
                    "--n-concepts", "2", "--out", out / "c", "--quiet"])

    with _small_filesystem(tmp_path / "full", size="4k") as full:
        (full / "filler").write_bytes(b"x" * 4096)
        code, _, err = run(full)
        assert code == 2 and "no space left" in err and len(err.splitlines()) == 1, err
    with _small_filesystem(tmp_path / "ro", options=",ro") as read_only:
        code, _, err = run(read_only)
        assert code == 2 and "read-only file system" in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("command", ["apply", "compute", "concepts", "extract", "evaluate"])
def test_a_file_where_a_folder_is_expected_is_one_line(cli, tiny_dir, samples, tmp_path, command):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    rows = [dict(samples[i], id=f"q{i}") for i in range(6)]
    xlvlm.FeatureStore.from_tensors({"1": torch.rand(6, 8)}, rows, path=tmp_path / "a")
    if command == "apply":
        argv = ["steer", "apply", *_vector_and_data(tmp_path, samples, tiny_dir), "--out", blocker / "p.jsonl"]
    elif command == "compute":
        xlvlm.FeatureStore.from_tensors({"1": torch.rand(6, 8) + 1}, rows, path=tmp_path / "b")
        argv = ["steer", "compute", "--source", tmp_path / "a", "--target", tmp_path / "b", "--layer", "1",
                "--out", blocker / "sub" / "v.safetensors"]
    elif command == "concepts":
        argv = ["concepts", "--features", tmp_path / "a", "--layer", "1", "--method", "kmeans", "--n-concepts", "2",
                "--out", blocker / "c", "--quiet"]
    elif command == "extract":
        data = tmp_path / "d.jsonl"
        data.write_text("".join(json.dumps(s) + "\n" for s in samples[:2]))
        argv = ["extract", "--model", tiny_dir("llava"), "--data", data, "--out", blocker / "s", "--quiet"]
    else:
        (tmp_path / "p.jsonl").write_text("".join(json.dumps(dict(s, prediction="a")) + "\n" for s in rows))
        argv = ["evaluate", "--predictions", tmp_path / "p.jsonl", "--no-meteor", "--out", blocker / "e.json"]
    code, _, err = cli(argv)
    assert code == 2 and "blocker" in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert blocker.read_text() == "a file"
