"""Benchmark: xlvlm's mini-batch k-means against scikit-learn's MiniBatchKMeans and against
xlvlm's full (Lloyd) k-means, on the same planted matrix, in the same process.

    python bench/minibatch_kmeans.py                 # N=20000, D=1024, K=50 on CPU; appends to bench/RESULTS.md
    python bench/minibatch_kmeans.py --device cuda   # xlvlm's fits on the GPU (sklearn stays on the CPU)
    python bench/minibatch_kmeans.py --quick         # N=2000, D=64, K=10: a smoke run, writes nothing

Data: ``xlvlm.concepts.planted`` (every row one main concept, 30% a weaker second one, noise
0.1), float32. Each fit runs ``--repeats`` times after one warm-up and reports its best
time; inertia (sum of squared distances to the nearest centroid) is computed for every fit by
the same float64 function here, so the three are compared on one scale. scikit-learn runs
``MiniBatchKMeans(n_clusters=K, random_state=seed)`` with its defaults (batch_size 1024, one
k-means++ start on 3 x 1024 rows, early stopping), and once more with ``n_init=3`` starts (as
xlvlm's); xlvlm's ``minibatch-kmeans`` and ``kmeans`` run with their defaults. The load
average at the end is printed with the table: the cores may be shared.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import git_revision, report  # noqa: E402

from xlvlm.concepts import KMeans, MiniBatchKMeans  # noqa: E402
from xlvlm.concepts.planted import planted_matrix  # noqa: E402


def inertia(Z: torch.Tensor, C: torch.Tensor) -> float:
    """sum_n min_k ||Z_n - C_k||^2 in float64, for Z (N, D) and centroids C (K, D)."""
    return float(torch.cdist(Z.double(), torch.as_tensor(C).double().to(Z.device)).min(1).values.square().sum())


def best_time(fit, repeats: int, device: torch.device):
    """(best seconds of ``repeats`` calls after a warm-up, the last call's centroids (K, D))."""
    fit()
    times, centroids = [], None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        centroids = fit()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times), centroids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--d", type=int, default=1024)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and BLAS/OpenMP threads for every fit (default: as set up); 1 is steadiest on "
                             "shared cores")
    parser.add_argument("--quick", action="store_true", help="a small smoke run; writes nothing")
    args = parser.parse_args(argv)
    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    if args.quick:
        args.n, args.d, args.k, args.repeats = 2000, 64, 10, 1
    from sklearn.cluster import MiniBatchKMeans as SklearnMiniBatchKMeans

    device = torch.device(args.device)
    Z = planted_matrix(args.n, args.d, args.k, seed=args.seed)[0]
    Z_device, Z_numpy = Z.to(device), Z.numpy()
    fits = {
        "xlvlm minibatch-kmeans": (lambda: MiniBatchKMeans(args.k, seed=args.seed).fit(Z_device).components_, device),
        "xlvlm kmeans (Lloyd)": (lambda: KMeans(args.k, seed=args.seed).fit(Z_device).components_, device),
        "sklearn MiniBatchKMeans": (lambda: SklearnMiniBatchKMeans(n_clusters=args.k, random_state=args.seed)
                                    .fit(Z_numpy).cluster_centers_, torch.device("cpu")),
        "sklearn MiniBatchKMeans, n_init=3": (lambda: SklearnMiniBatchKMeans(n_clusters=args.k, n_init=3,
                                              random_state=args.seed).fit(Z_numpy).cluster_centers_,
                                              torch.device("cpu")),
    }
    results = {}
    for name, (fit, where) in fits.items():
        seconds, centroids = best_time(fit, args.repeats, where)
        results[name] = (seconds, inertia(Z_device, centroids))
        print(f"{name}: {seconds:.3f} s, inertia {results[name][1]:.6g}", flush=True)
    ours_t, ours_i = results["xlvlm minibatch-kmeans"]
    lines = [f"`bench/minibatch_kmeans.py` (git {git_revision()}): planted Z, N = {args.n}, D = {args.d}, K = {args.k}, "
             f"seed {args.seed}, xlvlm on {device.type}, {torch.get_num_threads()} torch thread(s), best of {args.repeats} after a warm-up, same process. "
             "Ratio = that fit's time / xlvlm minibatch-kmeans' time; inertia relative to minibatch-kmeans'.", "",
             "| fit | time (s) | time ratio | inertia | inertia vs minibatch-kmeans |", "|---|---|---|---|---|"]
    for name, (seconds, value) in results.items():
        lines.append(f"| {name} | {seconds:.3f} | {seconds / ours_t:.2f}x | {value:.6g} | {value / ours_i - 1:+.2%} |")
    report("minibatch-kmeans", lines, write=not args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
