"""hf: data through extraction and evaluation: the same as the JSONL route, bit for bit."""

import json

import pytest

from tests.data.hfdata import hf_cache, pope_rows, write_jsonl_route, write_parquet  # noqa: F401
from xlvlm.cli import main
from xlvlm.data import load_samples
from xlvlm.features import FeatureStore


def _without_image(store):
    return [{k: v for k, v in s.items() if k != "image"} for s in store.samples]


def _predictions(store, path):
    path.write_text("".join(json.dumps({k: s[k] for k in ("id", "prediction", "label", "split")}) + "\n"
                            for s in store.samples))
    return path


@pytest.mark.parametrize("streaming", [False, True])
def test_hf_and_jsonl_routes_give_identical_stores_and_pope_scores(streaming, tiny_dir, tmp_path, capsys):
    parquet = write_parquet(tmp_path / "pope.parquet", pope_rows(6))
    jsonl = write_jsonl_route(tmp_path / "jsonl", load_samples(f"hf:{parquet}", preset="pope"))
    common = ["extract", "--model", str(tiny_dir("llava")), "--layers", "1,final", "--select", "all", "--generate",
              "--max-new-tokens", "3", "--batch-size", "2", "--shard-samples", "2", "--quiet"]
    hf_args = ["--data", f"hf:{parquet}", "--preset", "pope"] + (["--streaming"] if streaming else [])
    assert main(common + hf_args + ["--out", str(tmp_path / "hf")]) == 0
    assert main(common + ["--data", str(jsonl), "--out", str(tmp_path / "jsonl-store")]) == 0
    via_hf, via_jsonl = FeatureStore(tmp_path / "hf"), FeatureStore(tmp_path / "jsonl-store")
    shards = sorted(p.name for p in (tmp_path / "hf").glob("shard-*.safetensors"))
    assert len(shards) == 3
    for name in shards:  # the tensors, byte for byte
        assert (tmp_path / "hf" / name).read_bytes() == (tmp_path / "jsonl-store" / name).read_bytes()
    assert _without_image(via_hf) == _without_image(via_jsonl)
    assert via_hf.samples[4]["image"] == f"hf:{parquet}:train row 4"

    capsys.readouterr()
    reports = []
    for store, name in ((via_hf, "hf"), (via_jsonl, "jsonl")):
        predictions = _predictions(store, tmp_path / f"{name}.jsonl")
        assert main(["evaluate", "--task", "pope", "--predictions", str(predictions), "--out", str(tmp_path / f"{name}-eval")]) == 0
        reports.append(capsys.readouterr().out.replace(str(predictions), "PREDICTIONS")
                       .replace(str(tmp_path / f"{name}-eval"), "OUT"))
    assert reports[0] == reports[1] and "adversarial" in reports[0]


def test_resume_key_covers_the_image_bytes(vlm_of, tmp_path):
    import xlvlm
    from xlvlm.errors import XlvlmError

    rows = pope_rows(4)
    parquet = write_parquet(tmp_path / "pope.parquet", rows)
    out = tmp_path / "store"
    xlvlm.extract(vlm_of("llava"), load_samples(f"hf:{parquet}", preset="pope")[:2], out=out, progress=False)
    rows["image"][1] = rows["image"][0]  # same fields, other pixels in one row
    write_parquet(parquet, rows)
    with pytest.raises(XlvlmError, match="other sample content"):
        xlvlm.extract(vlm_of("llava"), load_samples(f"hf:{parquet}", preset="pope")[:2], out=out, progress=False)


def test_streaming_with_ids_and_limit_gives_the_subset_of_the_whole_read(vlm_of, tmp_path):
    import torch

    import xlvlm
    from xlvlm.data import select_subset

    parquet = write_parquet(tmp_path / "pope.parquet", pope_rows(12))
    (tmp_path / "ids.txt").write_text("10\n3\n7\n")
    stores = []
    for streaming in (False, True):
        samples = load_samples(f"hf:{parquet}", preset="pope", streaming=streaming)
        subset = select_subset(select_subset(samples, ids_file=tmp_path / "ids.txt"), n=2, seed=1)
        stores.append(xlvlm.extract(vlm_of("llava"), subset, progress=False))
    assert stores[0].ids == stores[1].ids and len(stores[0].ids) == 2 and set(stores[0].ids) <= {"3", "7", "10"}
    assert torch.equal(stores[0].features("final"), stores[1].features("final"))
