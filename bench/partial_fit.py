"""Benchmark: a plain ``partial_fit`` loop over minibatches, xlvlm's SemiNMF and MiniBatchKMeans
beside scikit-learn's MiniBatchDictionaryLearning and MiniBatchKMeans, in the same process.

    python bench/partial_fit.py              # N=3000, D=64, K=8, 500-row minibatches; appends to bench/RESULTS.md
    python bench/partial_fit.py --n 20000 --d 512 --k 20 --batch 1000
    python bench/partial_fit.py --quick      # a smoke run, writes nothing

Data: ``xlvlm.concepts.planted`` (every row one main concept, 30% a weaker second one, noise
0.1), float32 (scikit-learn gets the same values as float64). Every estimator sees the same
minibatches in the same order, ``passes`` times over the rows (shuffled once per pass), by
``partial_fit`` alone (no end_pass). Error = ||Z - Z_hat||_F / ||Z||_F over all rows with each
estimator's own encoder and decoder (k-means: the nearest centroid). scikit-learn's
dictionary learner runs with non-negative codes (``positive_code=True``, coordinate descent,
``alpha`` = ``transform_alpha`` = 0.01: nearly unpenalised, as SemiNMF's default l1 = 0); its
k-means with its defaults. The batch fits (``SemiNMF.fit``, ``KMeans.fit``) are the reference
errors. Times: best of ``--repeats`` after a warm-up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import git_revision, report  # noqa: E402
from minibatch_kmeans import best_time  # noqa: E402

from xlvlm.concepts import KMeans, MiniBatchKMeans, SemiNMF  # noqa: E402
from xlvlm.concepts.planted import planted_matrix  # noqa: E402


def relative_error(Z: np.ndarray, Z_hat: np.ndarray) -> float:
    return float(np.linalg.norm(Z.astype(np.float64) - Z_hat) / np.linalg.norm(Z.astype(np.float64)))


def nearest_centroids(Z: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Each row of Z (N, D) replaced by its nearest centroid of C (K, D)."""
    d = (Z.astype(np.float64) ** 2).sum(1)[:, None] - 2 * Z @ C.T.astype(np.float64) + (C.astype(np.float64) ** 2).sum(1)
    return C[d.argmin(1)]


def loop(estimator, batches: list, passes: int):
    """``passes`` times partial_fit on every minibatch; the estimator."""
    for _ in range(passes):
        for batch in batches:
            estimator.partial_fit(batch)
    return estimator


def fits(args, Z: np.ndarray, batches: list) -> dict:
    """name -> (fit function returning Z_hat (N, D) as numpy)."""
    from sklearn.cluster import MiniBatchKMeans as SklearnMiniBatchKMeans
    from sklearn.decomposition import MiniBatchDictionaryLearning

    numpy_batches = [b.astype(np.float64) for b in batches]
    ours = lambda est: est.inverse_transform(est.transform(Z))  # noqa: E731
    table = {"xlvlm SemiNMF.fit (batch reference)": lambda: ours(SemiNMF(args.k, seed=args.seed).fit(Z)),
             "xlvlm KMeans.fit (batch reference)": lambda: ours(KMeans(args.k, seed=args.seed).fit(Z))}
    for p in args.passes:
        table[f"xlvlm SemiNMF partial_fit, {p} pass(es)"] = (
            lambda p=p: ours(loop(SemiNMF(args.k, seed=args.seed), batches, p)))
        table[f"sklearn MiniBatchDictionaryLearning partial_fit, {p} pass(es)"] = (
            lambda p=p: _dictionary_learning(loop(MiniBatchDictionaryLearning(
                n_components=args.k, alpha=0.01, transform_alpha=0.01, positive_code=True, fit_algorithm="cd",
                transform_algorithm="lasso_cd", random_state=args.seed), numpy_batches, p), Z))
        table[f"xlvlm MiniBatchKMeans partial_fit, {p} pass(es)"] = (
            lambda p=p: nearest_centroids(Z, loop(MiniBatchKMeans(args.k, seed=args.seed), batches, p)
                                          .components_.numpy()))
        table[f"sklearn MiniBatchKMeans partial_fit, {p} pass(es)"] = (
            lambda p=p: nearest_centroids(Z, loop(SklearnMiniBatchKMeans(n_clusters=args.k, random_state=args.seed),
                                                  numpy_batches, p).cluster_centers_))
    return table


def _dictionary_learning(est, Z: np.ndarray) -> np.ndarray:
    return est.transform(Z.astype(np.float64)) @ est.components_


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--passes", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (1 is steadiest on shared cores)")
    parser.add_argument("--quick", action="store_true", help="a small smoke run; writes nothing")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    if args.quick:
        args.n, args.repeats, args.passes = 1000, 1, [1]
    Z = planted_matrix(args.n, args.d, args.k, seed=args.seed)[0].numpy()
    order = np.random.default_rng(args.seed).permutation(args.n)
    batches = [Z[order[i:i + args.batch]] for i in range(0, args.n, args.batch)]
    results = {}
    for name, fit in fits(args, Z, batches).items():
        seconds, Z_hat = best_time(fit, args.repeats, torch.device("cpu"))
        results[name] = (seconds, relative_error(Z, np.asarray(Z_hat)))
        print(f"{name}: {seconds:.3f} s, error {results[name][1]:.4f}", flush=True)
    lines = [f"`bench/partial_fit.py` (git {git_revision()}): planted Z, N = {args.n}, D = {args.d}, K = {args.k}, "
             f"minibatches of {args.batch} rows in one shuffled order, seed {args.seed}, {args.threads} torch/BLAS "
             f"thread(s), best of {args.repeats} after a warm-up, same process. Error = ||Z - Z_hat||_F / ||Z||_F; "
             "ratio = error / the batch fit's (SemiNMF.fit for the dictionaries, KMeans.fit for k-means).", "",
             "| fit | time (s) | error | error / batch fit's |", "|---|---|---|---|"]
    for name, (seconds, error) in results.items():
        reference = results["xlvlm KMeans.fit (batch reference)" if "KMeans" in name
                            else "xlvlm SemiNMF.fit (batch reference)"][1]
        lines.append(f"| {name} | {seconds:.3f} | {error:.4f} | {error / reference:.3f}x |")
    report("partial_fit", lines, write=not args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
