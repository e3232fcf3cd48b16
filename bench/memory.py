"""Memory at scale: extraction's peak RSS against N, and concepts learned from a store larger
than the memory they use.

Every measurement runs in a fresh Python process and reads its own peak resident set size
(``ru_maxrss``: heap, libraries, and the pages of memory-mapped shard files it touched). The
"baseline" is the same process's peak after its imports and set-up, before the measured work.

    python bench/memory.py store      # xlvlm.extract's loop, synthetic model, D=4096, N = 1k..200k
    python bench/memory.py real       # real extraction, tiny random-weight LLaVA, easy-VQA images
    python bench/memory.py concepts   # streaming snmf / kmeans, K=50, over a ~2 GB planted store
    python bench/memory.py all --write   # all three; --write appends to bench/RESULTS.md

``store`` isolates the store: a stand-in for the model returns random (B, D) rows per batch, so
the measured process runs exactly ``xlvlm.extract``'s batching, pending rows, shard flushes,
checksums and manifest writes, at a hidden size of 4096 (LLaVA-7B), without a 7B forward.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import append_results, git_revision  # noqa: E402

HERE = Path(__file__).resolve()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


# ---- measured work (each in its own process) -----------------------------------------------------
def child_store(n: int, dim: int, out: str, batch_size: int = 32, shard_samples: int = 512) -> dict:
    """xlvlm.extract over n synthetic samples; the model is a stand-in returning random rows."""
    from types import SimpleNamespace

    import torch

    from xlvlm.features import run as run_module

    generator = torch.Generator().manual_seed(0)

    def synthetic_batch(vlm, samples, layers, selector):
        rows = {key: torch.randn(len(samples), dim, generator=generator) for key in layers}
        return run_module.BatchFeatures(rows, torch.arange(len(samples)), [True] * len(samples),
                                        [None] * len(samples), [s["prompt"] for s in samples])

    run_module.extract_batch_teacher_forced = synthetic_batch
    vlm = SimpleNamespace(name="synthetic", family="synthetic", num_layers=32, hidden_size=dim, dtype=torch.float32,
                          final_norm=torch.nn.Identity())
    samples = [{"id": str(i), "image": f"img{i % 1000}.png", "prompt": "what is in the image?"} for i in range(n)]
    baseline = peak_rss_mb()
    start = time.perf_counter()
    store = run_module.extract(vlm, samples, layers=["final"], out=out, batch_size=batch_size,
                               shard_samples=shard_samples, progress=False)
    seconds = time.perf_counter() - start
    assert len(store) == n
    return {"n": n, "dim": dim, "baseline_mb": baseline, "peak_mb": peak_rss_mb(), "seconds": seconds,
            "store_mb": folder_bytes(Path(out)) / 2**20}


def child_real(n: int, out: str, batch_size: int = 8, shard_samples: int = 64) -> dict:
    """Real extraction (tiny random-weight LLaVA, easy-VQA test images), last-prompt + final."""
    import torch

    from common import build_vlm, samples

    import xlvlm

    vlm = build_vlm("tiny", "cpu", torch.float32)
    rows = samples(n)
    baseline = peak_rss_mb()
    start = time.perf_counter()
    xlvlm.extract(vlm, rows, layers=[1, "final"], select="all", out=out, batch_size=batch_size,
                  shard_samples=shard_samples, progress=False)
    return {"n": n, "baseline_mb": baseline, "peak_mb": peak_rss_mb(), "seconds": time.perf_counter() - start,
            "store_mb": folder_bytes(Path(out)) / 2**20}


def child_planted(n: int, dim: int, k: int, out: str, shard_rows: int = 512) -> dict:
    """Write Z = U V + noise (planted_matrix's recipe) shard by shard: never all of Z in memory."""
    import torch

    from xlvlm.features.store import StoreWriter

    generator = torch.Generator().manual_seed(0)
    V = torch.randn(k, dim, generator=generator)
    V = V / V.norm(dim=1, keepdim=True) * dim**0.5
    settings = {"model": "planted", "family": "", "num_layers": None, "hidden_size": dim, "layers": ["final"],
                "selector": "custom", "rows_per_sample": 1, "teacher_forcing": False, "generation": None,
                "dtype": "float32"}
    writer = StoreWriter(out, settings, [str(i) for i in range(n)])
    start = time.perf_counter()
    for first in range(0, n, shard_rows):
        b = min(shard_rows, n - first)
        U = torch.zeros(b, k)
        main = torch.randint(k, (b,), generator=generator)
        U[torch.arange(b), main] = 1.0 + torch.rand(b, generator=generator)
        second = torch.nonzero(torch.rand(b, generator=generator) < 0.3).flatten()
        other = (main[second] + torch.randint(1, k, (len(second),), generator=generator)) % k
        U[second, other] = 0.1 + 0.4 * torch.rand(len(second), generator=generator)
        Z = U @ V + 0.1 * torch.randn(b, dim, generator=generator)
        meta = [{"id": str(first + i), "present": True, "rows": 1} for i in range(b)]
        writer.write_shard({"final": Z}, torch.arange(first, first + b), meta, [])
    writer.finish()
    return {"n": n, "dim": dim, "peak_mb": peak_rss_mb(), "seconds": time.perf_counter() - start,
            "store_mb": folder_bytes(Path(out)) / 2**20}


def child_concepts(store_path: str, method: str, k: int, batch_rows: int, streaming: bool, options: dict) -> dict:
    import torch

    from xlvlm import FeatureStore
    from xlvlm.concepts import learn_concepts
    from xlvlm.concepts import learn_concepts_streaming

    store = FeatureStore(store_path)
    baseline = peak_rss_mb()
    start = time.perf_counter()
    if streaming:
        cd = learn_concepts_streaming(store, "final", method=method, n_concepts=k, batch_rows=batch_rows, **options)
    else:
        cd = learn_concepts(store.features("final"), method=method, n_concepts=k, **options)
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()
    # Relative error ||Z - recon|| / ||Z||, streamed (after the peak was read).
    residual = total = 0.0
    first = 0
    for Z in store.iter_rows("final", batch_rows):
        U = cd.activations[first:first + Z.shape[0]]
        residual += float((Z - cd.inverse_transform(U)).double().square().sum())
        total += float(Z.double().square().sum())
        first += Z.shape[0]
    return {"method": method, "streaming": streaming, "n": len(store),
            "store_mb": folder_bytes(Path(store_path)) / 2**20,
            "baseline_mb": baseline, "peak_mb": peak, "seconds": seconds, "rel_error": (residual / total) ** 0.5,
            "passes": cd.info.get("passes"), "threads": torch.get_num_threads()}


CHILDREN = {"store": child_store, "real": child_real, "planted": child_planted, "concepts": child_concepts}


def measure(kind: str, **kwargs) -> dict:
    """Run one child in a fresh interpreter and return its JSON line."""
    result = subprocess.run([sys.executable, str(HERE), "_child", kind, json.dumps(kwargs)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise SystemExit(f"{kind} {kwargs} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---- suites ------------------------------------------------------------------------------------
def suite_store(work: Path, sizes: list[int], dim: int) -> list[str]:
    lines = ["Extraction loop (`xlvlm.extract`, synthetic model: random rows), D = "
             f"{dim}, float32, batch 32, 512 samples per shard:", "",
             "| N samples | store size (MB) | peak RSS (MB) | baseline RSS (MB) | peak - baseline (MB) | time (s) |",
             "|---|---|---|---|---|---|"]
    for n in sizes:
        out = work / f"store-{n}"
        r = measure("store", n=n, dim=dim, out=str(out))
        shutil.rmtree(out)
        print(f"store N={n}: {r}", flush=True)
        lines.append(f"| {n:,} | {r['store_mb']:.0f} | {r['peak_mb']:.0f} | {r['baseline_mb']:.0f} | "
                     f"{r['peak_mb'] - r['baseline_mb']:.0f} | {r['seconds']:.1f} |")
    return lines


def suite_real(work: Path, sizes: list[int]) -> list[str]:
    lines = ["Real extraction (tiny random-weight LLaVA from bench/common.py, easy-VQA test images, "
             "layers 1 + final, selector `all`, batch 8, 64 samples per shard):", "",
             "| N samples | store size (MB) | peak RSS (MB) | baseline RSS (MB) | peak - baseline (MB) | time (s) |",
             "|---|---|---|---|---|---|"]
    for n in sizes:
        out = work / f"real-{n}"
        r = measure("real", n=n, out=str(out))
        shutil.rmtree(out)
        print(f"real N={n}: {r}", flush=True)
        lines.append(f"| {n:,} | {r['store_mb']:.1f} | {r['peak_mb']:.0f} | {r['baseline_mb']:.0f} | "
                     f"{r['peak_mb'] - r['baseline_mb']:.0f} | {r['seconds']:.1f} |")
    return lines


def suite_concepts(work: Path, n_large: int, n_small: int, dim: int, k: int, batch_rows: int, passes: int) -> list[str]:
    lines = [f"Concepts from a planted store (Z = U V + noise, K_true = {k}, D = {dim}, float32, 512 rows per "
             f"shard), K = {k}, minibatches of {batch_rows} rows; streaming snmf capped at {passes} fitting passes, "
             f"kmeans 3 epochs. Error = ||Z - recon||_F / ||Z||_F.", "",
             "| method | how | N rows | store (MB) | peak RSS (MB) | baseline RSS (MB) | time (s) | passes | error |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n in (n_small, n_large):
        path = work / f"planted-{n}"
        made = measure("planted", n=n, dim=dim, k=k, out=str(path))
        print(f"planted N={n}: {made}", flush=True)
        runs = [("snmf", True, {"max_iter": passes, "tol": 1e-3, "init_rows": 4096}), ("kmeans", True, {"n_init": 10})]
        if n == n_small:
            runs += [("snmf", False, {}), ("kmeans", False, {})]
        for method, streaming, options in runs:
            r = measure("concepts", store_path=str(path), method=method, k=k, batch_rows=batch_rows,
                        streaming=streaming, options=options)
            print(f"concepts: {r}", flush=True)
            lines.append(f"| {method} | {'streaming' if streaming else 'in memory'} | {r['n']:,} | "
                         f"{r['store_mb']:.0f} | {r['peak_mb']:.0f} | {r['baseline_mb']:.0f} | {r['seconds']:.1f} | "
                         f"{r['passes'] or '-'} | {r['rel_error']:.4f} |")
        shutil.rmtree(path)
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        result = CHILDREN[sys.argv[2]](**json.loads(sys.argv[3]))
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["store", "real", "concepts", "all"])
    parser.add_argument("--sizes", default="1000,10000,50000,200000", help="N for `store`")
    parser.add_argument("--real-sizes", default="64,512", help="N for `real`")
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--rows", type=int, default=131072, help="rows of the large planted store (2 GB at D=4096)")
    parser.add_argument("--small-rows", type=int, default=16384, help="rows of the store also fitted in memory")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--batch-rows", type=int, default=4096)
    parser.add_argument("--passes", type=int, default=5, help="streaming snmf fitting passes (cap)")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--write", action="store_true", help="append the tables to bench/RESULTS.md")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="xlvlm-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    lines = [f"`bench/memory.py {' '.join(sys.argv[1:])}` at git {git_revision()}; peak RSS = the process's "
             "ru_maxrss (mapped shard pages included), baseline = the same after imports and set-up.", ""]
    try:
        if args.what in ("store", "all"):
            lines += suite_store(work, [int(x) for x in args.sizes.split(",")], args.dim) + [""]
        if args.what in ("real", "all"):
            lines += suite_real(work, [int(x) for x in args.real_sizes.split(",")]) + [""]
        if args.what in ("concepts", "all"):
            lines += suite_concepts(work, args.rows, args.small_rows, args.dim, args.k, args.batch_rows,
                                    args.passes) + [""]
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\n".join(lines))
    if args.write:
        append_results("memory", lines)


if __name__ == "__main__":
    main()
