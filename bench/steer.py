"""Steering overhead: batched generation with a steering vector applied vs not, same model,
batch and inputs, alternating runs (median of ``--repeats`` each).

    python bench/steer.py --shape small                   # CPU
    python bench/steer.py --shape llava-7b --device cuda  # GPU, fp16
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import Timer, append_results, build_vlm, git_revision, samples  # noqa: E402

from xlvlm.steer import SteeringVector  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="small", choices=["tiny", "small", "llava-7b"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--new-tokens", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    if args.threads:
        torch.set_num_threads(args.threads)
    vlm = build_vlm(args.shape, args.device, torch.float16 if gpu else torch.float32)
    vlm.model.generation_config.min_new_tokens = args.new_tokens
    rows = samples(args.batch_size or (16 if gpu else 8))
    layer = str(vlm.num_layers // 2)
    vector = SteeringVector({layer: torch.randn(vlm.hidden_size) * 0.01})
    configs = {"off": None, "add, all positions": dict(positions="all"),
               "add, generated only": dict(positions="generated")}

    def run(config):
        if config is None:
            vlm.generate_batch(rows, max_new_tokens=args.new_tokens)
        else:
            with vector.apply(vlm, alpha=1.0, **config):
                vlm.generate_batch(rows, max_new_tokens=args.new_tokens)

    for config in configs.values():
        run(config)  # warm-up
    times = {name: [] for name in configs}
    cpu_times = {name: [] for name in configs}
    names = list(configs)
    for repeat in range(args.repeats):
        # Rotate the order each round so that no configuration always runs first (or last).
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            with Timer(args.device) as t:
                run(configs[name])
            times[name].append(t.seconds)
            cpu_times[name].append(t.cpu_seconds)
    single_cpu_thread = not gpu and torch.get_num_threads() == 1
    base, fastest = statistics.median(times["off"]), min(times["off"])
    lines = [f"`python bench/steer.py --shape {args.shape} --device {args.device}"
             f"{f' --threads {args.threads}' if args.threads else ''}` (commit {git_revision()}); batch {len(rows)}, "
             f"{args.new_tokens} new tokens, layer {layer}, {torch.get_num_threads()} torch threads, {args.repeats} runs "
             "each in rotating order. Overhead of the medians, and of the fastest runs (the least disturbed by other "
             "work); spread = (slowest - fastest) / median, the noise level of that configuration's runs."
             + (" With one CPU thread, also the overhead of the median process CPU time, which other jobs on "
                "the shared cores disturb far less than the wall clock." if single_cpu_thread else ""),
             "", "| steering | median seconds per batch | overhead (medians) | overhead (fastest) | spread |"
             + (" overhead (CPU time) |" if single_cpu_thread else ""),
             "|---|---|---|---|---|" + ("---|" if single_cpu_thread else "")]
    cpu_base = statistics.median(cpu_times["off"])
    for name in configs:
        median = statistics.median(times[name])
        spread = (max(times[name]) - min(times[name])) / median
        line = (f"| {name} | {median:.3f} | {100 * (median / base - 1):+.1f}% | "
                f"{100 * (min(times[name]) / fastest - 1):+.1f}% | {100 * spread:.1f}% |")
        if single_cpu_thread:
            line += f" {100 * (statistics.median(cpu_times[name]) / cpu_base - 1):+.1f}% |"
        lines.append(line)
    lines += ["", "Time inside the steering hooks themselves (cProfile, one steered batch; its cumulative time of "
              "the hook functions over the whole generate call): "
              + ", ".join(f"{name}: {100 * share:.2f}%" for name, share in hook_shares(run, configs).items())]
    print("\n".join(lines))
    if args.write:
        append_results(f"steer, shape {args.shape}, {args.device}", lines)


def hook_shares(run, configs) -> dict[str, float]:
    """Share of a steered generate call spent inside xlvlm.steer.apply's hooks, per config.

    An accounting of the hooks' own work, independent of how noisy the wall clock is: the rest of
    the call is the model's, which steering does not change.
    """
    import cProfile
    import pstats

    shares = {}
    for name, config in configs.items():
        if config is None:
            continue
        profile = cProfile.Profile()
        profile.enable()
        run(config)
        profile.disable()
        stats = pstats.Stats(profile).stats  # {(file, line, function): (cc, nc, tottime, cumtime, callers)}
        total = sum(entry[2] for entry in stats.values())
        hooks = sum(entry[3] for (file, _, function), entry in stats.items()
                    if file.endswith("steer/apply.py") and function in ("hook", "model_pre_hook", "condition_hook"))
        shares[name] = hooks / total
    return shares


if __name__ == "__main__":
    main()
