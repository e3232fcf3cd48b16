"""Memory of extraction from hf: parquet data: streaming N rows against reading a tenth of them
whole.

The data: parquet files in lmms-eval's POPE schema (``Image`` feature, PNG bytes inside), each
image W x W pixels of noise (so PNG cannot shrink it: ~W*W*3 bytes a row). Each measurement runs
in a fresh process: the tiny random-weight LLaVA (``bench/common.py``), ``load_samples("hf:...",
preset="pope", streaming=...)``, ``check_images`` (what ``xlvlm extract`` does before loading the
model) and ``xlvlm.extract`` (layer final, last-prompt, batch 8, 512 samples a shard); it
reports its peak RSS (``ru_maxrss``) and the same before the data is opened ("baseline").

    python bench/hf_streaming.py                 # 5,000 rows streaming vs 500 rows not
    python bench/hf_streaming.py --full          # also 5,000 rows not streaming
    python bench/hf_streaming.py --write         # append the table to bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_data(path: Path, rows: int, width: int) -> None:
    """``rows`` POPE-schema rows with W x W noise PNGs, written 100 rows a row group."""
    import datasets
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    features = datasets.Features({"id": datasets.Value("string"), "question_id": datasets.Value("string"),
                                  "question": datasets.Value("string"), "answer": datasets.Value("string"),
                                  "image_source": datasets.Value("string"), "image": datasets.Image(),
                                  "category": datasets.Value("string")})
    rng = np.random.default_rng(0)
    with pq.ParquetWriter(str(path), features.arrow_schema) as writer:
        for first in range(0, rows, 100):
            chunk = range(first, min(rows, first + 100))
            images = []
            for _ in chunk:
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (width, width, 3), dtype=np.uint8)).save(buffer, "PNG")
                images.append({"bytes": buffer.getvalue(), "path": None})
            writer.write_table(pa.table({
                "id": [str(i) for i in chunk], "question_id": [str(i) for i in chunk],
                "question": [f"Is there a thing number {i % 7} in the image?" for i in chunk],
                "answer": ["yes" if i % 2 else "no" for i in chunk], "image_source": [f"noise{i}" for i in chunk],
                "image": images, "category": [("random", "popular", "adversarial")[i % 3] for i in chunk],
            }, schema=features.arrow_schema))


def child(data: str, streaming: bool, out: str) -> dict:
    """One measured extraction (see the module docstring)."""
    import torch

    from common import build_vlm

    import xlvlm
    from xlvlm.data import check_images, load_samples

    vlm = build_vlm("tiny", "cpu", torch.float32)
    baseline = peak_rss_mb()
    start = time.perf_counter()
    samples = load_samples(f"hf:{data}", preset="pope", streaming=streaming or None)
    check_images(samples)
    store = xlvlm.extract(vlm, samples, layers=["final"], out=out, batch_size=8, progress=False)
    assert len(store) == len(samples)
    return {"rows": len(samples), "baseline_mb": baseline, "peak_mb": peak_rss_mb(),
            "seconds": time.perf_counter() - start}


def measure(data: Path, streaming: bool, work: Path) -> dict:
    out = work / f"store-{data.stem}-{'stream' if streaming else 'whole'}"
    env = dict(os.environ, HF_DATASETS_CACHE=str(work / "hf-cache"), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, str(HERE), "_child", json.dumps([str(data), streaming, str(out)])],
                            capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{data} streaming={streaming} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--small-rows", type=int, default=500)
    parser.add_argument("--width", type=int, default=256, help="image side in pixels")
    parser.add_argument("--full", action="store_true", help="also the large file without streaming")
    parser.add_argument("--work", type=Path, default=None, help="folder for the data, cache and stores (kept)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="xlvlm-hf-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    large, small = work / f"pope-{args.rows}.parquet", work / f"pope-{args.small_rows}.parquet"
    for path, rows in ((large, args.rows), (small, args.small_rows)):
        if not path.exists():
            write_data(path, rows, args.width)
    runs = [(small, False), (large, True)] + ([(large, False)] if args.full else [])
    lines = ["| data | rows | mode | parquet (MB) | peak RSS (MB) | baseline RSS (MB) | peak - baseline (MB) | time (s) |",
             "|---|---|---|---|---|---|---|---|"]
    peaks = {}
    for data, streaming in runs:
        result = measure(data, streaming, work)
        mode = "streaming" if streaming else "whole (datasets cache, memory-mapped)"
        peaks[(data, streaming)] = result["peak_mb"]
        lines.append(f"| {data.name} | {result['rows']:,} | {mode} | {data.stat().st_size / 2**20:,.0f} | "
                     f"{result['peak_mb']:,.0f} | {result['baseline_mb']:,.0f} | "
                     f"{result['peak_mb'] - result['baseline_mb']:,.0f} | {result['seconds']:.1f} |")
        print(lines[-1], flush=True)
    difference = peaks[(large, True)] - peaks[(small, False)]
    lines += ["", f"Streaming {args.rows:,} rows minus whole {args.small_rows:,} rows, peak RSS: {difference:+,.0f} MB "
              f"(images {args.width} x {args.width} noise PNG; load average {os.getloadavg()[0]:.1f} at the end)."]
    print(lines[-1])
    if args.write:
        from common import append_results, git_revision

        append_results(f"hf: streaming memory (bench/hf_streaming.py, git {git_revision()})", lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        print(json.dumps(child(*json.loads(sys.argv[2]))))
    else:
        main()
