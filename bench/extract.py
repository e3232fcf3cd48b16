"""Extraction speed: ``xlvlm.extract`` against the research code's batch-1 loop.

Baseline (same model, same samples, same process): one sample at a time, a forward hook that
copies the layer's output to the CPU at every step and keeps it in a list. xlvlm: batched,
states kept on the device, only the selected rows copied once per batch; in teacher forcing
the pass stops after the deepest requested layer.

    python bench/extract.py --shape small                   # CPU
    python bench/extract.py --shape llava-7b --device cuda  # GPU, fp16

Prints images/s and ratios; ``--write`` appends them to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import Timer, append_results, build_vlm, git_revision, samples  # noqa: E402

import xlvlm  # noqa: E402
from xlvlm.hooks import hidden_of  # noqa: E402


def baseline_loop(vlm, rows, layer_index: int, generate: bool, new_tokens: int) -> None:
    """The research code's method: batch 1, every step's hidden state copied to the CPU."""
    kept = []
    handle = vlm.decoder_layers[layer_index].register_forward_hook(
        lambda m, a, o: kept.append(hidden_of(o).detach().cpu()))
    try:
        for sample in rows:
            kept.clear()
            batch = vlm.encode([sample])
            with torch.inference_mode():
                if generate:
                    vlm.model.generate(**batch.inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                       do_sample=False)
                else:
                    vlm.model(**batch.inputs)
    finally:
        handle.remove()


def run_xlvlm(vlm, rows, layer, generate: bool, new_tokens: int, batch_size: int, select: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="xlvlm-bench-"))
    try:
        xlvlm.extract(vlm, rows, layers=[layer], select=select, out=folder / "s", generate=generate,
                      max_new_tokens=new_tokens, batch_size=batch_size, progress=False)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="small", choices=["tiny", "small", "llava-7b"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n", type=int, default=None, help="samples per measurement")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--new-tokens", type=int, default=25)
    parser.add_argument("--write", action="store_true", help="append results to bench/RESULTS.md")
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    dtype = torch.float16 if gpu else torch.float32
    n = args.n or (64 if gpu else 16)
    batch_size = args.batch_size or (64 if gpu else 8)
    vlm = build_vlm(args.shape, args.device, dtype)
    # Random weights may emit EOS early; force the full length in both methods, as the anchor does.
    vlm.model.generation_config.min_new_tokens = args.new_tokens + 1
    rows = samples(n)
    last = vlm.num_layers - 1
    half = vlm.num_layers // 2 - 1
    warm = rows[: min(len(rows), batch_size)]
    run_xlvlm(vlm, warm[:2], last, True, args.new_tokens, 2, "last-prompt")  # warm-up (kernels, allocator)
    results = {}
    for mode, generate in (("generate", True), ("teacher forcing", False)):
        n_base = max(2, n // 4)
        with Timer(args.device) as t:
            baseline_loop(vlm, rows[:n_base], last, generate, args.new_tokens)
        results[f"{mode}: batch-1 loop"] = n_base / t.seconds
        layers = [(last, "full depth")] if generate else [(last, "full depth"), (half, f"layer {half} (early stop)")]
        for layer, label in layers:
            select = "generated-mean" if generate else "last-prompt"
            with Timer(args.device) as t:
                run_xlvlm(vlm, rows, layer, generate, args.new_tokens, batch_size, select)
            results[f"{mode}: xlvlm.extract batch {batch_size}, {label}"] = n / t.seconds
    lines = [f"`python bench/extract.py --shape {args.shape} --device {args.device}` (commit {git_revision()}); "
             f"{n} easy-VQA images, {args.new_tokens} new tokens in generate mode, dtype {str(dtype)[6:]}",
             "", "| measurement | images/s | ratio to its batch-1 loop |", "|---|---|---|"]
    for key, value in results.items():
        base = results[f"{key.split(':')[0]}: batch-1 loop"]
        lines.append(f"| {key} | {value:.2f} | {value / base:.1f}x |")
    print("\n".join(lines))
    if args.write:
        append_results(f"extract, shape {args.shape}, {args.device}", lines)


if __name__ == "__main__":
    main()
