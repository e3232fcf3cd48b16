"""Benchmark: xlvlm's semi-NMF against scikit-learn's DictionaryLearning(positive_code=True),
the research code's semi-NMF, on the same planted matrix.

    python bench/concepts.py                      # N=5000, D=4096, K=20 on CPU; appends to bench/RESULTS.md
    python bench/concepts.py --device cuda        # snmf on the GPU (sklearn stays on the CPU)
    python bench/concepts.py --quick              # N=600, D=256: a smoke run, writes nothing

How the ratio is obtained. Both fit the same float32 matrix Z = U V + noise (planted
structure, ``xlvlm.concepts.planted``; sklearn gets it as float64, where its lasso's
convergence test works: in float32 every row ran to its iteration cap). snmf runs to its own stopping rule (the best of
``--repeats`` timed runs after a warm-up). scikit-learn runs ``DictionaryLearning(
n_components=K, positive_code=True, fit_algorithm="cd", transform_algorithm="lasso_cd")``
with its defaults (alpha=1, max_iter=1000, SVD start) until it stops or until the time
budget ``--sklearn-budget`` is spent; a callback (sklearn calls it every 5 iterations) records
the elapsed time and the relative reconstruction error ||Z - U V|| / ||Z|| of its current
codes and dictionary, and stops the run when the next 5 iterations would pass the budget
(the callback's own time is subtracted). The speed-up is

    sklearn's time to first reach an error <= snmf's final error  /  snmf's time,

and when sklearn never gets there within its budget, its whole budgeted run time over
snmf's time, reported with ">" as a lower bound (snmf reached a lower error in that case).
The run also reports ``nndl``, xlvlm's torch implementation of sklearn's own objective
(0.5 ||Z - U V||^2 + alpha |U|_1), next to the objective sklearn had reached.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_name, run_conditions  # noqa: E402

from xlvlm.concepts import learn_concepts  # noqa: E402
from xlvlm.concepts.planted import planted_matrix  # noqa: E402
from xlvlm.io import atomic_write_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADING = "## concepts"
SECTION_INTRO = """\
`bench/concepts.py`: `learn_concepts(method="snmf")` vs scikit-learn
`DictionaryLearning(n_components=K, positive_code=True, fit_algorithm="cd",
transform_algorithm="lasso_cd")` (defaults otherwise: alpha=1, SVD start) on the same planted
float32 matrix Z = U V + noise (sklearn gets it as float64: in float32 its lasso never meets its
own convergence test). Error = ||Z - U V||_F / ||Z||_F. Speed-up = sklearn's time to
first reach snmf's error / snmf's time; ">" marks a lower bound: sklearn, stopped at its time
budget, had not reached snmf's error (its time to that point is used). sklearn's time includes
its SVD start. `nndl` = xlvlm's torch solver for sklearn's own objective, for comparison of
objective values at the same alpha.

| date | machine | snmf device | N x D, K | snmf time (s) | snmf error | sklearn time (s), iterations | sklearn error | speed-up at equal error | nndl time (s), objective / sklearn's |
|---|---|---|---|---|---|---|---|---|---|
"""


class _BudgetSpent(Exception):
    pass


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def relative_error(Z: np.ndarray, U: np.ndarray, V: np.ndarray) -> float:
    """||Z - U V||_F / ||Z||_F for Z (N, D), U (N, K), V (K, D), accumulated in float64."""
    residual = Z - (U @ V).astype(Z.dtype)
    return float(np.linalg.norm(residual.astype(np.float64)) / np.linalg.norm(Z.astype(np.float64)))


def time_xlvlm(Z: torch.Tensor, method: str, k: int, device: torch.device, repeats: int, **options):
    """Best wall time of ``repeats`` fits after a warm-up -> (seconds, ConceptDictionary)."""
    learn_concepts(Z[: min(len(Z), 200)], method, min(k, 4), device=device, **options)  # load kernels
    best = None
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        cd = learn_concepts(Z, method, k, device=device, **options)
        _sync(device)
        elapsed = time.perf_counter() - start
        if best is None or elapsed < best[0]:
            best = (elapsed, cd)
    return best


def run_sklearn(Z: np.ndarray, k: int, budget: float, seed: int) -> list[dict]:
    """Fit sklearn under a time budget; the trace: one dict per callback (every 5 iterations)."""
    from sklearn.decomposition import DictionaryLearning
    from sklearn.exceptions import ConvergenceWarning

    trace: list[dict] = []
    overhead = [0.0]
    start = time.perf_counter()

    def callback(state: dict) -> None:
        now = time.perf_counter()
        elapsed = now - start - overhead[0]
        code, dictionary = state["code"], state["dictionary"]
        trace.append(
            {
                "iterations": state["ii"] + 1,
                "seconds": elapsed,
                "error": relative_error(Z, code, dictionary),
                "objective": float(state["current_cost"]),
            }
        )
        overhead[0] += time.perf_counter() - now
        # The next callback comes 5 iterations later: stop now if they would overrun the budget.
        # (After the first callback only the SVD-inclusive time is known: stop on overrun only.)
        per_iteration = (trace[-1]["seconds"] - trace[-2]["seconds"]) / 5 if len(trace) > 1 else 0.0
        if elapsed + 5 * per_iteration > budget:
            raise _BudgetSpent

    model = DictionaryLearning(
        n_components=k, positive_code=True, fit_algorithm="cd", transform_algorithm="lasso_cd",
        random_state=seed, callback=callback,
    )
    try:
        with warnings.catch_warnings():
            # Its inner lasso warns on every non-converged row; the trace says how it went.
            warnings.simplefilter("ignore", ConvergenceWarning)
            code = model.fit_transform(Z)
        elapsed = time.perf_counter() - start - overhead[0]
        trace.append(
            {
                "iterations": model.n_iter_, "seconds": elapsed,
                "error": relative_error(Z, code, model.components_),
                "objective": float(model.error_[-1]), "converged": model.n_iter_ < model.max_iter,
            }
        )
    except _BudgetSpent:
        pass
    return trace


def time_to_reach(trace: list[dict], target: float) -> float | None:
    """First time sklearn's error was <= target, interpolated linearly between trace points."""
    previous = {"seconds": 0.0, "error": float("inf")}
    for point in trace:
        if point["error"] <= target:
            if not np.isfinite(previous["error"]):
                return point["seconds"]
            fraction = (previous["error"] - target) / max(previous["error"] - point["error"], 1e-30)
            return previous["seconds"] + fraction * (point["seconds"] - previous["seconds"])
        previous = point
    return None


def blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info

        return ",".join(sorted({str(pool["num_threads"]) for pool in threadpool_info() if pool["user_api"] == "blas"}))
    except ImportError:
        return "?"


def machine() -> str:
    cpu = cpu_name()
    return (
        f"{os.cpu_count()} cores ({cpu}), torch {torch.__version__}, "
        f"{run_conditions()}, numpy BLAS threads {blas_threads()}"
    )


def append_row(row: str, note: str) -> None:
    """Add a row to the ``## concepts`` table and a note below it; create file or section if missing.

    Other sections of the file are left as they are; our rows and notes stay in our section.
    """
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    lines = text.rstrip("\n").split("\n")
    if HEADING not in lines:
        lines += ["", HEADING, "", *SECTION_INTRO.rstrip("\n").split("\n"), row, "", f"- {note}"]
    else:
        at = lines.index(HEADING)
        end = next((i for i in range(at + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        last_row = max(i for i in range(at, end) if lines[i].startswith("|"))
        lines.insert(last_row + 1, row)
        end += 1
        last_text = max(i for i in range(at, end) if lines[i].strip())
        if last_text == last_row + 1:  # no notes yet: leave a blank line after the table
            lines.insert(last_text + 1, "")
            last_text += 1
        lines.insert(last_text + 1, f"- {note}")
    atomic_write_text(RESULTS, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000, help="samples (default 5000)")
    parser.add_argument("--d", type=int, default=4096, help="features (default 4096)")
    parser.add_argument("--k", type=int, default=20, help="concepts (default 20)")
    parser.add_argument("--device", default="cpu", help="device for snmf and nndl (default cpu)")
    parser.add_argument("--quick", action="store_true", help="N=600, D=256, 20 s sklearn budget; writes nothing")
    parser.add_argument("--sklearn-budget", type=float, default=150.0, help="seconds for sklearn (default 150)")
    parser.add_argument("--repeats", type=int, default=3, help="timed snmf runs, best kept (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="threads for torch and numpy's BLAS (default: theirs)")
    parser.add_argument("--no-write", action="store_true", help="print the row without appending it to RESULTS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.d, args.sklearn_budget, args.no_write = 600, 256, 20.0, True
    device = torch.device(args.device)
    if args.threads:
        import scipy.linalg  # noqa: F401  (load every BLAS first, so the limit reaches them all)
        import sklearn.decomposition  # noqa: F401
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)

    Z, _, _ = planted_matrix(args.n, args.d, args.k, seed=0)
    Z_np = Z.numpy()
    print(f"planted Z: {args.n} x {args.d}, K={args.k}; {machine()}", flush=True)

    snmf_seconds, snmf = time_xlvlm(Z, "snmf", args.k, device, args.repeats)
    snmf_error = relative_error(Z_np, snmf.activations.cpu().numpy(), snmf.components.cpu().numpy())
    print(f"snmf: {snmf_seconds:.2f} s, error {snmf_error:.5f}, {snmf.info['n_iter']} iterations", flush=True)

    nndl_seconds, nndl = time_xlvlm(Z, "nndl", args.k, device, 1)
    print(f"nndl: {nndl_seconds:.2f} s, objective {nndl.info['objective']:.6g}, {nndl.info['n_iter']} iterations", flush=True)

    print(f"sklearn DictionaryLearning: budget {args.sklearn_budget:.0f} s ...", flush=True)
    # float64 for sklearn: with float32 its lasso's duality-gap test is below float32 round-off,
    # so every row runs to its iteration cap and sklearn would look slower than it is.
    trace = run_sklearn(Z_np.astype(np.float64), args.k, args.sklearn_budget, seed=0)
    if not trace:
        print("sklearn did not finish one iteration within the budget; raise --sklearn-budget", file=sys.stderr)
        return 1
    for point in trace:
        print(f"  sklearn after {point['iterations']:4d} iterations: {point['seconds']:8.2f} s, error {point['error']:.5f}")
    last = trace[-1]
    reached = time_to_reach(trace, snmf_error)
    if reached is not None:
        ratio = f"{reached / snmf_seconds:.0f}x"
        how = f"sklearn reached snmf's error after {reached:.1f} s"
    elif last.get("converged"):
        ratio = f"> {last['seconds'] / snmf_seconds:.0f}x"
        how = (
            f"sklearn converged after {last['seconds']:.1f} s at a higher error than snmf's (its L1 term "
            "biases the codes), so the ratio is a lower bound"
        )
    else:
        ratio = f"> {last['seconds'] / snmf_seconds:.0f}x"
        how = (
            f"sklearn had not reached snmf's error when its budget stopped it after {last['seconds']:.1f} s, "
            "so the ratio is a lower bound"
        )
    per_iteration = (trace[-1]["seconds"] - trace[0]["seconds"]) / max(trace[-1]["iterations"] - trace[0]["iterations"], 1)
    stopped = "converged" if last.get("converged") else "stopped by budget"
    objective_ratio = nndl.info["objective"] / last["objective"]
    row = (
        f"| {datetime.date.today().isoformat()} | {machine()} | {device.type} | {args.n} x {args.d}, {args.k} "
        f"| {snmf_seconds:.2f} | {snmf_error:.4f} | {last['seconds']:.0f} ({last['iterations']} it., {stopped}) "
        f"| {last['error']:.4f} | {ratio} | {nndl_seconds:.2f}, {objective_ratio:.4f} |"
    )
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    note = (
        f"Run {datetime.datetime.now().isoformat(timespec='minutes')} (load average {load} when it ended: "
        f"the cores are shared): {how}; sklearn's first iteration "
        f"(SVD start included) ended at {trace[0]['seconds']:.1f} s, later iterations took "
        f"{per_iteration:.2f} s each; snmf: best of {args.repeats} runs, {snmf.info['n_iter']} outer iterations."
    )
    print(row)
    print(note)
    if not args.no_write:
        append_row(row, note)
        print(f"appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
