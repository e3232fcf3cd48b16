"""Exact activation patching of one pair over all layers x position groups: xlvlm.patching
against nnsight doing the same loop, in the same process, on CPU with one thread.

    python bench/patching.py [--model organism|small] [--repeats 5] [--write]

The pair: an organism colour pair (xlvlm.apps.organism.colour_pairs; with --model small, a
random-weight LLaVA of bench/common.py's "small" shape, hidden 512, 8 layers, 577 image tokens,
on the same two images). Sites: the embeddings and every block's output; cells: the four
position groups (image, question, template, last token), 4 x (layers + 1) patched runs.

Timed, each from the samples to the recovery matrix:
  xlvlm batched        patch(vlm, [pair], batch_size=32): all patched rows in few passes
  xlvlm 1 row/pass     patch(vlm, [pair], batch_size=1): one patched run per forward pass
  nnsight loop         nnsight 0.8 (NNsight around the same HF model): one trace for the clean
                       states, one for the corrupted metric, one trace per (site, group); the
                       groups' positions are given (xlvlm finds them inside its timed run)
Both give the same matrix (the largest difference is printed). nnsight installs with
`pip install 'xlvlm[bench]'`; without it the script says so and stops.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from common import RESULTS, git_revision, machine, time_rotating

import xlvlm
from xlvlm.apps.organism.colour_pairs import colour_pairs
from xlvlm.patching import make_pairs, patch
from xlvlm.patching.exact import prepare_pairs


def nnsight_loop(model, vlm, pair, groups: list[list[int]]) -> torch.Tensor:
    """Recovery (layers + 1, groups) of one pair with nnsight: the same teacher-forced inputs
    and metric as xlvlm (logit difference at the last prompt token)."""
    clean = vlm.encode([pair.clean], answers=[pair.answers[0]])
    corrupted = vlm.encode([pair.corrupted], answers=[pair.answers[0]])
    read = clean.prompt_lengths[0] - 1
    ids = [vlm.tokenizer.convert_tokens_to_ids(a) for a in pair.answers]
    layers = model.model.language_model.layers

    def metric(logits):
        return float(logits[0, read, ids[0]] - logits[0, read, ids[1]])

    saved, logits = [], []  # filled inside the traces (nnsight runs their bodies itself)
    with torch.no_grad(), model.trace(**clean.inputs):
        saved.append(layers[0].input.save())
        for layer in layers:
            saved.append(layer.output.save())
        logits.append(model.output.logits.save())
    with torch.no_grad(), model.trace(**corrupted.inputs):
        logits.append(model.output.logits.save())
    m_clean, m_corrupted = metric(logits[0]), metric(logits[1])
    out = torch.zeros(len(saved), len(groups))
    for site in range(len(saved)):
        for g, positions in enumerate(groups):
            with torch.no_grad(), model.trace(**corrupted.inputs):
                if site == 0:
                    layers[0].input[:, positions] = saved[0][:, positions]
                else:
                    layers[site - 1].output[:, positions] = saved[site][:, positions]
                logits.append(model.output.logits.save())
            out[site, g] = (metric(logits[-1]) - m_corrupted) / (m_clean - m_corrupted)
    return out


def load(model_name: str, folder: Path):
    clean, corrupted = colour_pairs(folder, n=1, seed=0)
    if model_name == "organism":
        return xlvlm.organism.load("original"), make_pairs(clean, corrupted)
    from common import build_vlm

    vlm = build_vlm("small", "cpu", torch.float32)
    words = sorted(t for t in vlm.tokenizer.get_vocab() if t.isalpha() and len(t) > 2)[:2]
    return vlm, make_pairs(clean, corrupted, answers=words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("organism", "small"), default="organism")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="append the results to bench/RESULTS.md")
    args = parser.parse_args()
    try:
        from nnsight import NNsight
    except ImportError:
        raise SystemExit("nnsight is not installed: pip install 'xlvlm[bench]'")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        vlm, pairs = load(args.model, Path(folder))
        model = NNsight(vlm.model)
        groups = prepare_pairs(vlm, pairs, "groups", "logit-diff")[0].cells.positions
        ours = patch(vlm, pairs, batch_size=32).pairs[0].recovery
        theirs = nnsight_loop(model, vlm, pairs[0], groups)
        difference = float((ours - theirs).abs().max())
        configs = {"xlvlm batched": lambda: patch(vlm, pairs, batch_size=32),
                   "xlvlm 1 row/pass": lambda: patch(vlm, pairs, batch_size=1),
                   "nnsight loop": lambda: nnsight_loop(model, vlm, pairs[0], groups)}
        times, _ = time_rotating(lambda run: run(), configs, args.repeats, "cpu")
    base = statistics.median(times["nnsight loop"])
    lines = [f"Model: {args.model} ({vlm.num_layers} blocks, hidden {vlm.hidden_size}); one pair, "
             f"{len(ours)} sites x 4 groups = {ours.numel()} patched runs; git {git_revision()}; "
             f"largest |recovery(xlvlm) - recovery(nnsight)| = {difference:.2e}.", "",
             "| loop | median s | min s | nnsight median / this median |", "|---|---|---|---|"]
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.3f} | {min(values):.3f} | {base / median:.2f}x |")
    print("\n".join(lines))
    if args.write:
        from datetime import datetime, timezone

        text = RESULTS.read_text()
        if "\n## patching\n" not in text:
            text = text.rstrip("\n") + "\n\n## patching\n\n`bench/patching.py` (its docstring says what is timed).\n"
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        RESULTS.write_text(text.rstrip("\n") + f"\n\n### {args.model}, {stamp}\n\nMachine: {machine()} (2 cores "
                           f"shared with other jobs), {args.repeats} timed runs each after a warm-up, order rotated.\n\n"
                           + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
