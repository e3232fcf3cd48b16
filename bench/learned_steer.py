"""Input-dependent steering: its overhead during generation, and the time to learn it.

Generation: batched greedy generation with no steering, a fixed vector, the per-sample oracle
(P2S: each sample's own vector, looked up by id) and learned steering (L2S: g(x) = W2 tanh(W1 x
+ b1) + b2, hidden 100, computed from each sample's last prompt state at prefill), same model,
batch and inputs, in rotating order (median of ``--repeats`` each), as ``bench/steer.py``.
Training: ``LearnedSteering.fit`` with its defaults (100 epochs, hidden 100) on ``--train-samples``
pairs of the model's hidden size.

    python bench/learned_steer.py                                   # the hallucinating organism, CPU
    python bench/learned_steer.py --shape llava-7b --device cuda    # LLaVA-1.5-7B's shape, GPU, fp16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import (add_generation_options, append_results, build_vlm, git_revision, hook_shares, overhead_table,  # noqa: E402
                    samples, time_rotating)

from xlvlm.steer import LearnedSteering, PerSampleSteering, SteeringVector  # noqa: E402


def load_model(args):
    if args.shape == "organism":
        from xlvlm import organism

        return organism.load("hallucinating", device=args.device)
    return build_vlm(args.shape, args.device, torch.float16 if args.device.startswith("cuda") else torch.float32)


def random_learned(d: int, layer: str, hidden: int = 100, seed: int = 0) -> LearnedSteering:
    """A network of the trained shape; its weights do not change its cost."""
    g = torch.Generator().manual_seed(seed)
    return LearnedSteering(layer, layer, torch.randn(hidden, d, generator=g) / d ** 0.5, torch.zeros(hidden),
                           0.01 * torch.randn(d, hidden, generator=g), torch.zeros(d))


def training_time(d: int, n: int, seed: int = 0) -> tuple[float, dict]:
    """Seconds of LearnedSteering.fit (defaults) on n random pairs of size d, and its report."""
    import xlvlm

    g = torch.Generator().manual_seed(seed)
    ids = [f"s{i}" for i in range(n)]
    context = xlvlm.FeatureStore.from_tensors({"0": torch.randn(n, d, generator=g)}, [{"id": i} for i in ids])
    shifts = PerSampleSteering({"0": torch.randn(n, d, generator=g)}, ids)
    start = time.perf_counter()
    model = LearnedSteering.fit(context, shifts, context_layer=0)
    return time.perf_counter() - start, model.metadata["training"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # --shape organism: the hallucinating organism; the others: random-weight LLaVAs of bench/common.py
    add_generation_options(parser, ["organism", "tiny", "small", "llava-7b"], "organism")
    parser.add_argument("--train-samples", type=int, default=1200,
                        help="pairs for the training time (the research code's POPE training set: 1,200)")
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    if args.threads:
        torch.set_num_threads(args.threads)
    vlm = load_model(args)
    vlm.model.generation_config.min_new_tokens = args.new_tokens
    rows = samples(args.batch_size or (16 if gpu else 8))
    layer = str(vlm.num_layers // 2)
    d = vlm.hidden_size
    vector = SteeringVector({layer: 0.01 * torch.randn(d)})
    oracle = PerSampleSteering({layer: 0.01 * torch.randn(len(rows), d)}, [s["id"] for s in rows])
    learned = random_learned(d, layer)
    configs = {"off": None, "fixed vector": vector, "per-sample oracle (P2S)": oracle, "learned (L2S)": learned}

    def run(steering):
        if steering is None:
            vlm.generate_batch(rows, max_new_tokens=args.new_tokens)
        else:
            with steering.apply(vlm, alpha=1.0):
                vlm.generate_batch(rows, max_new_tokens=args.new_tokens)

    times, cpu_times = time_rotating(run, configs, args.repeats, args.device)
    single_cpu_thread = not gpu and torch.get_num_threads() == 1
    name = "organism:hallucinating" if args.shape == "organism" else f"shape {args.shape}"
    lines = [f"`python bench/learned_steer.py --shape {args.shape} --device {args.device}"
             f"{f' --threads {args.threads}' if args.threads else ''}` (commit {git_revision()}); {name}, batch "
             f"{len(rows)}, {args.new_tokens} new tokens, all positions of layer {layer} steered (L2S: context at the "
             f"same layer, hidden 100), {torch.get_num_threads()} torch threads, {args.repeats} runs each in rotating "
             "order. Overhead of the medians and of the fastest runs against no steering; spread = (slowest - fastest) "
             "/ median." + (" Also the overhead of the median process CPU time (one thread)." if single_cpu_thread
                            else ""),
             "", *overhead_table(times, cpu_times, "off", "steering", single_cpu_thread)]
    lines += ["", "Time inside the steering hooks themselves (cProfile, one steered batch; the hooks' cumulative time, "
              "the network and the id look-up included, over the whole generate call): "
              + ", ".join(f"{name}: {100 * share:.2f}%" for name, share in hook_shares(run, configs).items())]
    seconds, report = training_time(d, args.train_samples)
    lines += ["", f"Training (`LearnedSteering.fit`, defaults: 100 epochs, hidden 100, minibatch 64, CPU): "
              f"{seconds:.1f} s for {report['n_train']} train + {report['n_val']} held-out pairs of size {d} "
              f"(random data: the time, not the fit, is measured)."]
    print("\n".join(lines))
    if args.write:
        append_results(f"learned steering, {name}, {args.device}", lines)


if __name__ == "__main__":
    main()
