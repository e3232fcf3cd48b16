"""Shared set-up for the benchmarks: a LLaVA-shaped model with random weights, wrapped in the
project's own adapter, and easy-VQA images as inputs.

Speed depends on shapes, not weight values, so a random-weight model of LLaVA-1.5-7B's shape
times like the real one. Shapes:
  tiny      the test-suite size (CPU, seconds)
  small     hidden 512, 8 layers, 576 image tokens from 336 px / 14 px patches (CPU, minutes)
  llava-7b  LLaVA-1.5-7B: hidden 4096, 32 layers, CLIP ViT-L/14-336 (GPU, fp16)
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from datetime import date
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")

SHAPES = {
    "tiny": dict(text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                           num_key_value_heads=4),
                 vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                             image_size=56, patch_size=14)),
    "small": dict(text=dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8,
                            num_key_value_heads=8),
                  vision=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                              image_size=336, patch_size=14)),
    "llava-7b": dict(text=dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                               num_attention_heads=32, num_key_value_heads=32, rms_norm_eps=1e-5),
                     vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                 num_attention_heads=16, image_size=336, patch_size=14)),
}


def add_generation_options(parser, shapes: list[str], default_shape: str) -> None:
    """The options every generation benchmark takes: shape, device, batch, tokens, repeats, threads, --write."""
    parser.add_argument("--shape", default=default_shape, choices=shapes)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--new-tokens", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--write", action="store_true")


def build_vlm(shape: str, device: str, dtype: torch.dtype, seed: int = 0):
    """A LLaVA of the given shape with random weights, built directly on ``device``."""
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    from xlvlm.models.llava import LlavaVLM
    from xlvlm.testing.tiny import LLAVA_CHAT_TEMPLATE, tiny_vocabulary, train_word_tokenizer

    spec = SHAPES[shape]
    tokenizer = train_word_tokenizer(tiny_vocabulary(), ["<unk>", "<pad>", "<s>", "</s>", "<image>"])
    text = LlamaConfig(vocab_size=32064, max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **spec["text"])
    vision = CLIPVisionConfig(projection_dim=768, **spec["vision"])
    n_image = (spec["vision"]["image_size"] // spec["vision"]["patch_size"]) ** 2
    config = LlavaConfig(text_config=text, vision_config=vision, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-2, vision_feature_select_strategy="default", image_seq_length=n_image)
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype)
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    size = spec["vision"]["image_size"]
    processor = LlavaProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": size},
                                                                     crop_size={"height": size, "width": size}),
                               tokenizer=tokenizer, patch_size=spec["vision"]["patch_size"],
                               vision_feature_select_strategy="default", chat_template=LLAVA_CHAT_TEMPLATE,
                               num_additional_image_tokens=1)
    return LlavaVLM(model, processor, f"random-{shape}")


def samples(n: int) -> list[dict]:
    from xlvlm.data import load_samples

    return load_samples("easyvqa:test")[:n]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class Timer:
    def __init__(self, device: str):
        self.device = device

    """Wall-clock seconds of a block (the device synchronised at both ends), and the process's
    CPU seconds (``cpu_seconds``): on a CPU run with one thread, the time this process actually
    ran, which other jobs on shared cores disturb far less than the wall clock."""

    def __enter__(self):
        sync(self.device)
        self.start = time.perf_counter()
        self.start_cpu = time.process_time()
        return self

    def __exit__(self, *exc):
        sync(self.device)
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.start_cpu


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_conditions() -> str:
    """The CPU settings a timing ran under: OpenMP's wait policy (set before torch loaded, or
    OpenMP's spinning default), torch threads, the CPUs available, and the load average over the
    last minute (other work on the same cores)."""
    import os

    from xlvlm.threads import thread_settings

    settings = thread_settings()
    try:
        load = f"{os.getloadavg()[0]:.1f}"
    except OSError:
        load = "?"
    return (f"OMP_WAIT_POLICY={settings['omp_wait_policy']}, {settings['torch_threads']} torch threads on "
            f"{settings['cpus']} CPUs, load average {load}")


def machine() -> str:
    cpu = cpu_name()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {run_conditions()}, {gpu}, torch {torch.__version__}"


def append_results(section: str, lines: list[str]) -> None:
    """Append a dated block under a section heading of bench/RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nEvery number here comes from a run of the script named in its section.\n"
    block = f"\n### {section}, {date.today().isoformat()}\n\nMachine: {machine()}\n\n" + "\n".join(lines) + "\n"
    RESULTS.write_text(text.rstrip("\n") + "\n" + block)


def report(section: str, lines: list[str], write: bool) -> None:
    """Add the load average to a result block, print it, and append it to RESULTS.md if ``write``."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [*lines, "", f"- Load average when the run ended: {load} (timings on shared cores vary between runs)."]
    print("\n".join(lines))
    if write:
        append_results(section, lines)


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip() or "?"
    except OSError:
        return "?"


def time_rotating(run, configs: dict, repeats: int, device: str) -> tuple[dict, dict]:
    """Wall and process-CPU seconds of ``run(config)`` for every config, ``repeats`` times each,
    after one warm-up each; the order rotates every round so that no configuration always runs
    first (or last). Returns ({name: [seconds]}, {name: [cpu seconds]})."""
    for config in configs.values():
        run(config)  # warm-up
    times = {name: [] for name in configs}
    cpu_times = {name: [] for name in configs}
    names = list(configs)
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            with Timer(device) as t:
                run(configs[name])
            times[name].append(t.seconds)
            cpu_times[name].append(t.cpu_seconds)
    return times, cpu_times


def overhead_table(times: dict, cpu_times: dict, baseline: str, label: str, with_cpu: bool) -> list[str]:
    """Markdown rows: median seconds, overhead of the medians and of the fastest runs against
    ``baseline``, spread = (slowest - fastest) / median; with ``with_cpu``, the overhead of the
    median process CPU time too."""
    import statistics

    lines = [f"| {label} | median seconds per batch | overhead (medians) | overhead (fastest) | spread |"
             + (" overhead (CPU time) |" if with_cpu else ""), "|---|---|---|---|---|" + ("---|" if with_cpu else "")]
    base, fastest = statistics.median(times[baseline]), min(times[baseline])
    cpu_base = statistics.median(cpu_times[baseline])
    for name in times:
        median = statistics.median(times[name])
        spread = (max(times[name]) - min(times[name])) / median
        line = (f"| {name} | {median:.3f} | {100 * (median / base - 1):+.1f}% | "
                f"{100 * (min(times[name]) / fastest - 1):+.1f}% | {100 * spread:.1f}% |")
        if with_cpu:
            line += f" {100 * (statistics.median(cpu_times[name]) / cpu_base - 1):+.1f}% |"
        lines.append(line)
    return lines


# The functions of xlvlm.steer.apply that run as hooks (or listeners) on every call of the model.
HOOK_FUNCTIONS = ("hook", "model_pre_hook", "condition_hook", "context_hook", "listener")


def hook_shares(run, configs: dict) -> dict[str, float]:
    """Share of a steered call spent inside xlvlm.steer.apply's hooks, per config (None: skipped).

    An accounting of the hooks' own work (what they call included: for learned steering, the
    network), independent of how noisy the wall clock is: the rest of the call is the model's,
    which steering does not change.
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
                    if file.endswith("steer/apply.py") and function in HOOK_FUNCTIONS)
        shares[name] = hooks / total
    return shares
