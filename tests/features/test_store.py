import json

import pytest
import torch
from PIL import Image

import xlvlm
from xlvlm.errors import XlvlmError
from xlvlm.features import run as run_module


def _same_store(a, b):
    assert a.ids == b.ids
    assert [s["text"] for s in a.samples] == [s["text"] for s in b.samples]
    assert [s["present"] for s in a.samples] == [s["present"] for s in b.samples]
    for layer in a.layers:
        torch.testing.assert_close(a.features(layer), b.features(layer), rtol=0, atol=0, equal_nan=True)
    assert torch.equal(a.row_sample, b.row_sample)


def test_store_round_trip_metadata(vlm_of, samples, tmp_path):
    vlm = vlm_of("llava")
    store = xlvlm.extract(vlm, samples[:4], layers=["final", 0], select="last-prompt", out=tmp_path / "s",
                          batch_size=3, shard_samples=2, progress=False)
    reread = xlvlm.FeatureStore(tmp_path / "s")
    assert reread.complete and len(reread) == 4 and reread.layers == ["final", "0"]
    assert reread.features(0).shape == (4, vlm.hidden_size)
    assert reread.features(-vlm.num_layers).shape == (4, vlm.hidden_size)  # negative index
    first = reread.samples[0]
    assert {"id", "image", "prompt", "text", "present", "answer"} <= set(first)
    assert first["text"] == vlm.format_prompt(samples[0]["prompt"])[0]
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["schema_version"] == 1 and manifest["selector"] == "last-prompt"
    assert len(manifest["shards"]) == 2
    reread.verify()
    with pytest.raises(XlvlmError, match="not in store"):
        reread.features(2)


def test_interrupted_run_resumes_to_the_same_store(vlm_of, samples, tmp_path, monkeypatch):
    vlm = vlm_of("llava")
    full = xlvlm.extract(vlm, samples, layers=[1, "final"], select="all", out=tmp_path / "full",
                         batch_size=2, shard_samples=2, progress=False)
    real = run_module.extract_batch_teacher_forced
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "extract_batch_teacher_forced", dying)
    with pytest.raises(KeyboardInterrupt):
        xlvlm.extract(vlm, samples, layers=[1, "final"], select="all", out=tmp_path / "part",
                      batch_size=2, shard_samples=2, progress=False)
    partial = xlvlm.FeatureStore(tmp_path / "part", allow_partial=True)
    assert not partial.complete and len(partial) == 4
    monkeypatch.setattr(run_module, "extract_batch_teacher_forced", real)
    resumed = xlvlm.extract(vlm, samples, layers=[1, "final"], select="all", out=tmp_path / "part",
                            batch_size=2, shard_samples=2, progress=False)
    assert resumed.complete
    _same_store(full, resumed)
    with pytest.raises(XlvlmError, match="made with selector"):
        xlvlm.extract(vlm, samples, layers=[1, "final"], select="last-prompt", out=tmp_path / "part", progress=False)
    with pytest.raises(XlvlmError, match="other samples"):
        xlvlm.extract(vlm, samples[:3], layers=[1, "final"], select="all", out=tmp_path / "part", progress=False)


def test_bad_images_error_or_are_skipped_and_recorded(vlm_of, samples, tmp_path):
    vlm = vlm_of("llava")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    bad = [dict(samples[0]), dict(samples[1], id="bad1", image=str(corrupt)),
           dict(samples[2], id="bad2", image=str(tmp_path / "missing.png")), dict(samples[3])]
    with pytest.raises(XlvlmError, match="corrupt.png"):
        xlvlm.extract(vlm, bad, out=tmp_path / "a", progress=False)
    store = xlvlm.extract(vlm, bad, out=tmp_path / "b", skip_bad=True, progress=False)
    assert store.ids == [samples[0]["id"], samples[3]["id"]]
    skipped = store.manifest.skipped
    assert [s["id"] for s in skipped] == ["bad1", "bad2"] and "missing.png" in skipped[1]["reason"]


def test_altered_or_truncated_shard_is_named(vlm_of, samples, tmp_path):
    vlm = vlm_of("llava")
    xlvlm.extract(vlm, samples[:2], out=tmp_path / "s", progress=False)
    shard = tmp_path / "s" / "shard-00000.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(XlvlmError, match="checksum"):
        xlvlm.FeatureStore(tmp_path / "s").verify()
    shard.write_bytes(bytes(data[:-10]))
    with pytest.raises(XlvlmError, match="shard-00000.safetensors.*truncated"):
        xlvlm.FeatureStore(tmp_path / "s").features("final")


def test_store_errors(tmp_path):
    with pytest.raises(XlvlmError, match="not a feature store"):
        xlvlm.FeatureStore(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(XlvlmError, match="corrupt manifest"):
        xlvlm.FeatureStore(tmp_path)


def test_absent_samples_keep_their_place(vlm_of, samples, tmp_path):
    vlm = vlm_of("llava")
    rows = [dict(samples[0], answer="a red circle"), dict(samples[1], answer="a blue square"),
            dict(samples[2], answer="red")]
    store = xlvlm.extract(vlm, rows, select="token:red", out=tmp_path / "s", progress=False)
    assert store.present.tolist() == [True, False, True]
    features = store.features("final")
    assert features.shape[0] == 3 and torch.isnan(features[1]).all() and not torch.isnan(features[0]).any()
    assert store.features("final", present_only=True).shape[0] == 2


def test_teacher_forced_response_selector_needs_answers(vlm_of, samples, tmp_path):
    vlm = vlm_of("llava")
    rows = [{k: v for k, v in s.items() if k != "answer"} for s in samples[:2]]
    with pytest.raises(XlvlmError, match="has no 'answer'"):
        xlvlm.extract(vlm, rows, select="generated-mean", out=tmp_path / "s", progress=False)


def test_unknown_model_is_one_line(tmp_path):
    with pytest.raises(XlvlmError) as info:
        xlvlm.load_vlm(tmp_path / "nothing-here")
    assert "\n" not in str(info.value)
    with pytest.raises(XlvlmError, match="cannot load model"):
        xlvlm.load_vlm("no-such-org/no-such-model")


# ---- the resume key: every setting and every sample's content -------------------------------
def test_ids_digest_is_unambiguous():
    from xlvlm.features.store import ids_digest, records_digest

    assert ids_digest(["a", "b"]) != ids_digest(["a\nb"])
    assert records_digest([["a", "b"]]) != records_digest([["a\nb"]])
    assert records_digest([{"p": "x"}, {"p": "y"}]) != records_digest([{"p": "x"}, {"p": "y"}, {}])


def _interrupted(vlm, rows, out, monkeypatch, after_batches=1):
    """Extract ``rows`` into ``out``, interrupted after ``after_batches`` batches (a partial store)."""
    real = run_module.extract_batch_teacher_forced
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after_batches:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "extract_batch_teacher_forced", dying)
    with pytest.raises(KeyboardInterrupt):
        xlvlm.extract(vlm, rows, out=out, batch_size=2, shard_samples=2, progress=False)
    monkeypatch.setattr(run_module, "extract_batch_teacher_forced", real)


@pytest.mark.parametrize("complete", [True, False], ids=["complete", "partial"])
def test_rerun_with_other_content_or_settings_is_refused(complete, vlm_of, samples, tmp_path, monkeypatch):
    vlm = vlm_of("llava")
    rows = [dict(s) for s in samples[:4]]
    out = tmp_path / "s"
    if complete:
        xlvlm.extract(vlm, rows, out=out, batch_size=2, shard_samples=2, progress=False)
    else:
        _interrupted(vlm, rows, out, monkeypatch)
    before = (out / "manifest.json").read_bytes()
    image_copy = tmp_path / "copy.png"
    image_copy.write_bytes(open(rows[3]["image"], "rb").read())
    changed = {
        "prompt": [dict(r, prompt=r["prompt"] + " Answer briefly.") if i == 3 else r for i, r in enumerate(rows)],
        "answer": [dict(r, answer="something else") if i == 0 else r for i, r in enumerate(rows)],
        "image path": [dict(r, image=str(image_copy)) if i == 3 else r for i, r in enumerate(rows)],
        "extra field": [dict(r, note="x") if i == 2 else r for i, r in enumerate(rows)],
    }
    for what, other in changed.items():
        with pytest.raises(XlvlmError, match="made from other sample content") as info:
            xlvlm.extract(vlm, other, out=out, batch_size=2, shard_samples=2, progress=False)
        assert "\n" not in str(info.value), what
    # The same path with other bytes is other content too.
    monkeypatch.setattr(run_module, "_image_sha256", lambda image: "0" * 64)
    with pytest.raises(XlvlmError, match="made from other sample content"):
        xlvlm.extract(vlm, rows, out=out, batch_size=2, shard_samples=2, progress=False)
    monkeypatch.undo()
    # Another chat template (every sample's text changes), another dtype: other settings.
    monkeypatch.setattr(vlm.processor, "chat_template", vlm.processor.chat_template.replace("USER", "HUMAN"))
    with pytest.raises(XlvlmError, match="made with prompt_format="):
        xlvlm.extract(vlm, rows, out=out, batch_size=2, shard_samples=2, progress=False)
    monkeypatch.undo()
    assert (out / "manifest.json").read_bytes() == before  # nothing was mixed in
    store = xlvlm.extract(vlm, rows, out=out, batch_size=2, shard_samples=2, progress=False)
    assert store.complete and store.ids == [r["id"] for r in rows]


def test_cli_rerun_with_another_prompt_is_one_line(tiny_dir, samples, tmp_path, capsys):
    from xlvlm.cli import main

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(s) + "\n" for s in samples[:2]))
    args = ["extract", "--model", str(tiny_dir("llava")), "--data", str(data), "--out", str(tmp_path / "s"), "--quiet"]
    assert main(args) == 0
    data.write_text("".join(json.dumps(dict(s, prompt="What colour is it?")) + "\n" for s in samples[:2]))
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "made from other sample content" in err
