"""Steering overhead: batched generation with a steering vector applied vs not, same model,
batch and inputs, alternating runs (median of ``--repeats`` each).

    python bench/steer.py --shape small                   # CPU
    python bench/steer.py --shape llava-7b --device cuda  # GPU, fp16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import (add_generation_options, append_results, build_vlm, git_revision, hook_shares, overhead_table,  # noqa: E402
                    samples, time_rotating)

from xlvlm.steer import SteeringVector  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generation_options(parser, ["tiny", "small", "llava-7b"], "small")
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

    times, cpu_times = time_rotating(run, configs, args.repeats, args.device)
    single_cpu_thread = not gpu and torch.get_num_threads() == 1
    lines = [f"`python bench/steer.py --shape {args.shape} --device {args.device}"
             f"{f' --threads {args.threads}' if args.threads else ''}` (commit {git_revision()}); batch {len(rows)}, "
             f"{args.new_tokens} new tokens, layer {layer}, {torch.get_num_threads()} torch threads, {args.repeats} runs "
             "each in rotating order. Overhead of the medians, and of the fastest runs (the least disturbed by other "
             "work); spread = (slowest - fastest) / median, the noise level of that configuration's runs."
             + (" With one CPU thread, also the overhead of the median process CPU time, which other jobs on "
                "the shared cores disturb far less than the wall clock." if single_cpu_thread else ""),
             "", *overhead_table(times, cpu_times, "off", "steering", single_cpu_thread)]
    lines += ["", "Time inside the steering hooks themselves (cProfile, one steered batch; its cumulative time of "
              "the hook functions over the whole generate call): "
              + ", ".join(f"{name}: {100 * share:.2f}%" for name, share in hook_shares(run, configs).items())]
    print("\n".join(lines))
    if args.write:
        append_results(f"steer, shape {args.shape}, {args.device}", lines)


if __name__ == "__main__":
    main()
