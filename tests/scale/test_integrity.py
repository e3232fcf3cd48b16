"""Every command that reads a store checks it: checksums, metadata, finite rows, status.

Each damage below once passed through `concepts`, `shift`, `steer compute` and `steer
condition` with exit status 0. Now each is one line naming the file, exit status 2.
"""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import xlvlm
from xlvlm.cli import main
from xlvlm.errors import XlvlmError
from xlvlm.features.manifest import StoreSettings
from xlvlm.features.store import StoreWriter
from xlvlm.io import sha256_file
from tests.scale.conftest import write_store

N, D = 8, 6


def _features(seed: int) -> torch.Tensor:
    """(N, D): two well separated groups, so that every command has something to learn."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.rand(N, D, generator=generator) + 0.1
    rows[: N // 2, 0] += 3.0
    return rows


IMAGES = []  # N sample records with real images (concepts and shift draw them)


@pytest.fixture(autouse=True)
def _images(samples):
    IMAGES[:] = [{"image": s["image"], "prompt": s["prompt"]} for s in samples[:N]]


def _write(path, rows, **options):
    write_store(path, {"final": rows}, shard_rows=4, fields=IMAGES, **options)


def _pair(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    _write(good, _features(0))
    _write(bad, _features(1))
    return good, bad


def _commands(good, bad, out):
    """Every command that reads stores, with the damaged store in each role."""
    return {
        "concepts": ["concepts", "--features", str(bad), "--layer", "final", "--method", "kmeans",
                     "--n-concepts", "2", "--no-text-similarity", "--quiet", "--out", str(out / "c")],
        "shift": ["shift", "--original", str(bad), "--finetuned", str(good), "--layer", "final",
                  "--method", "kmeans", "--n-concepts", "2", "--out", str(out / "s")],
        "steer compute": ["steer", "compute", "--source", str(good), "--target", str(bad), "--layer", "final",
                          "--out", str(out / "v.safetensors")],
        "steer condition": ["steer", "condition", "--positive", str(good), "--negative", str(bad),
                            "--layer", "final", "--out", str(out / "cond.safetensors")],
    }


def _rewrite_manifest(store, change):
    manifest = json.loads((store / "manifest.json").read_text())
    change(manifest)
    (store / "manifest.json").write_text(json.dumps(manifest))


def _flip_bytes(good, bad):
    shard = bad / "shard-00001.safetensors"
    data = bytearray(shard.read_bytes())
    for i in (-4, -3, -2, -1):  # four bytes of the last row's last value: same size, other numbers
        data[i] ^= 0x21
    shard.write_bytes(bytes(data))
    return "shard-00001.safetensors: checksum mismatch"


def _copied_shard(good, bad):
    (bad / "shard-00000.safetensors").write_bytes((good / "shard-00000.safetensors").read_bytes())
    return "shard-00000.safetensors: checksum mismatch"


def _edited_metadata(good, bad):
    meta = bad / "shard-00000.jsonl"
    meta.write_text(meta.read_text().replace('"x1"', '"x7"'))
    return "shard-00000.jsonl: checksum mismatch"


def _swapped_metadata(good, bad):
    first, second = bad / "shard-00000.jsonl", bad / "shard-00001.jsonl"
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    return "shard-00000.jsonl: checksum mismatch"


def _duplicate_ids(good, bad):
    ids = [f"x{i}" for i in range(N)]
    ids[6] = "x2"
    for path in bad.iterdir():
        path.unlink()
    _write(bad, _features(1), ids=ids)  # checksums all valid
    return "shard-00001.jsonl:3: sample id 'x2' appears twice (first at shard-00000.jsonl:3)"


def _non_finite(value):
    def damage(good, bad):
        rows = _features(1)
        rows[5, 2] = value
        for path in bad.iterdir():
            path.unlink()
        _write(bad, rows)  # as a model overflowing in float16 would
        return "shard-00001.safetensors: layer/final row 1 (a present sample) holds NaN or inf"
    return damage


def _float16_rewrite(good, bad):
    shard = bad / "shard-00001.safetensors"
    tensors = load_file(shard)
    tensors["layer/final"] = tensors["layer/final"].half()
    save_file(tensors, shard)
    return "shard-00001.safetensors: size"


def _float16_rewrite_with_manifest(good, bad):
    _float16_rewrite(good, bad)
    shard = bad / "shard-00001.safetensors"

    def update(manifest):
        manifest["shards"][1].update(bytes=shard.stat().st_size, sha256=sha256_file(shard))

    _rewrite_manifest(bad, update)
    return "shard-00001.safetensors: layer/final is float16, the manifest says float32"


DAMAGES = {"flipped bytes": _flip_bytes, "copied shard": _copied_shard, "edited metadata": _edited_metadata,
           "swapped metadata": _swapped_metadata, "duplicate ids": _duplicate_ids,
           "NaN row": _non_finite(float("nan")), "inf row": _non_finite(float("inf")),
           "float16 rewrite": _float16_rewrite, "float16 rewrite, manifest updated": _float16_rewrite_with_manifest}


@pytest.mark.parametrize("damage", DAMAGES)
def test_every_command_refuses_a_damaged_store(damage, tmp_path, capsys):
    good, bad = _pair(tmp_path)
    needle = DAMAGES[damage](good, bad)
    for name, args in _commands(good, bad, tmp_path / "out").items():
        assert main(args) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err and "re-extract" in err, (name, err)
    assert not (tmp_path / "out" / "v.safetensors").exists()
    with pytest.raises(XlvlmError, match=needle.split(":")[0]):
        xlvlm.FeatureStore(bad).verify()


def test_undamaged_stores_pass_every_command(tmp_path, capsys):
    good, bad = _pair(tmp_path)
    for name, args in _commands(good, bad, tmp_path / "out").items():
        assert main(args) == 0, (name, capsys.readouterr().err)
    xlvlm.FeatureStore(bad).verify()


def test_absent_samples_may_be_nan_but_not_present_ones(tmp_path):
    rows = _features(0)
    rows[3] = float("nan")
    _write(tmp_path / "s", rows, present=[i != 3 for i in range(N)])
    store = xlvlm.FeatureStore(tmp_path / "s")
    store.verify()
    assert store.features("final", present_only=True).shape == (N - 1, D)
    with pytest.raises(XlvlmError, match="row 3 .* holds NaN or inf"):
        xlvlm.FeatureStore.from_tensors(tmp_path / "t", {"final": rows}, [{"id": f"x{i}"} for i in range(N)])


def test_huge_finite_rows_are_not_mistaken_for_inf(tmp_path):
    rows = _features(0)
    rows[2] = 3e38  # finite, though the row's sum overflows
    rows[6, 1] = float("inf")
    _write(tmp_path / "s", rows, present=[i != 6 for i in range(N)])
    store = xlvlm.FeatureStore(tmp_path / "s")
    assert store.features("final")[2, 0] == 3e38
    store.verify()


def test_streamed_reads_check_too(tmp_path):
    good, bad = _pair(tmp_path)
    _non_finite(float("nan"))(good, bad)
    with pytest.raises(XlvlmError, match="row 1 .* NaN or inf"):
        list(xlvlm.FeatureStore(bad).iter_rows("final", batch_rows=3))
    _duplicate_ids(good, bad)
    with pytest.raises(XlvlmError, match="appears twice"):
        xlvlm.FeatureStore(bad).verify()


# ---- partial stores ---------------------------------------------------------------------------
def _partial(path, features, done: int):
    """A store whose extraction stopped after ``done`` of N samples (as after a SIGKILL)."""
    settings = StoreSettings(**{"model": "", "family": "", "num_layers": None, "hidden_size": D, "layers": ["final"],
                "selector": "custom", "rows_per_sample": 1, "teacher_forcing": False, "generation": None,
                "dtype": "float32"})
    writer = StoreWriter(path, settings, [f"x{i}" for i in range(N)])
    rows = [{**IMAGES[i], "id": f"x{i}", "present": True, "rows": 1} for i in range(done)]
    writer.write_shard({"final": features[:done]}, torch.arange(done), rows, [])


def test_partial_stores_are_refused_unless_allowed(tmp_path, capsys):
    good, bad = _pair(tmp_path)
    for path in bad.iterdir():
        path.unlink()
    _partial(bad, _features(1), done=5)
    for name, args in _commands(good, bad, tmp_path / "out").items():
        assert main(args) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "partial store (5 of 8 samples extracted" in err, (name, err)
        assert "--allow-partial" in err
        assert main(args + ["--allow-partial"]) == 0, (name, capsys.readouterr().err)
    with pytest.raises(XlvlmError, match="allow_partial=True"):
        xlvlm.FeatureStore(bad)
    assert len(xlvlm.FeatureStore(bad, allow_partial=True)) == 5


def test_sweep_checks_its_stores_before_generating(tiny_dir, samples, tmp_path, capsys):
    from tests.scale.conftest import write_jsonl

    vlm = xlvlm.load_vlm(tiny_dir("llava"))
    source = xlvlm.extract(vlm, samples[:4], out=tmp_path / "source", progress=False)
    xlvlm.extract(vlm, samples[4:], out=tmp_path / "target", progress=False)
    data = write_jsonl(tmp_path / "d.jsonl", samples[:2])
    shard = source.path / "shard-00000.safetensors"
    data_bytes = bytearray(shard.read_bytes())
    data_bytes[-1] ^= 0x10
    shard.write_bytes(bytes(data_bytes))
    args = ["steer", "sweep", "--model", str(tiny_dir("llava")), "--data", str(data), "--source",
            str(tmp_path / "source"), "--target", str(tmp_path / "target"), "--alphas", "1", "--quiet",
            "--max-new-tokens", "2", "--out", str(tmp_path / "sweep")]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "shard-00000.safetensors: checksum mismatch" in err
    assert not (tmp_path / "sweep" / "baseline.jsonl").exists()
