"""CPU thread settings that stay fast when the cores are shared with other work.

OpenMP's default wait policy keeps idle worker threads spinning for a while after each parallel
region; torch runs thousands of small regions, and when another process holds a core those
spinning threads steal it from the one thread doing the work. On 2 busy shared cores the
default made POPE prediction 7.7x and streaming SNMF 2.6x slower (bench/RESULTS.md, "Threads on
shared cores").
``OMP_WAIT_POLICY=PASSIVE`` makes idle threads sleep at once, which costs nothing measurable on
idle cores.

OpenMP reads its environment once, when torch loads it: :func:`use_safe_threads` must run
before ``import torch`` for the wait policy to apply (the ``xlvlm`` command calls it first
thing). Nothing here imports torch.
"""

from __future__ import annotations

import os
import sys
import warnings

WAIT_POLICY = "PASSIVE"


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask, bounded by a cgroup CPU quota (a
    container given 2 CPUs on a 64-core host sees 64 cores but gets the time of 2)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            count = min(count, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def use_safe_threads(threads: int | None = None) -> dict:
    """Choose CPU thread settings that do not slow down on shared cores; returns what is in force.

    Sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment already sets it, and the number of
    torch threads: ``threads`` if given, else ``OMP_NUM_THREADS`` if set, else the CPUs this
    process may use (:func:`available_cpus`). Call it before ``import torch`` (first thing in a
    script, after ``import xlvlm``): once torch is loaded the wait policy can no longer change,
    and a warning says how to set it instead.

    Returns :func:`thread_settings`, the record a benchmark writes next to its timings.
    """
    torch_loaded = "torch" in sys.modules
    if torch_loaded and "OMP_WAIT_POLICY" not in os.environ:
        warnings.warn("use_safe_threads() ran after torch was imported, so OpenMP keeps its default "
                      "(spinning) wait policy: call it before importing torch, or start Python with "
                      "OMP_WAIT_POLICY=PASSIVE in the environment", stacklevel=2)
    elif not torch_loaded:
        os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    if threads is None:
        threads = _env_threads() or available_cpus()
    if torch_loaded:
        import torch

        torch.set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # read by torch when it loads
    return thread_settings()


def _env_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def thread_settings() -> dict:
    """The thread settings in force, as recorded next to timings: ``{"omp_wait_policy": str
    ("default" when the environment does not set it), "torch_threads": int, "cpus": int}`` (the
    torch thread count is ``OMP_NUM_THREADS`` or the available CPUs while torch is not loaded)."""
    if "torch" in sys.modules:
        import torch

        count = torch.get_num_threads()
    else:
        count = _env_threads() or available_cpus()
    return {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"), "torch_threads": count,
            "cpus": available_cpus()}
