"""Activation patching on the model organism: the numbers and figures of the "Activation
patching" section of docs/organism-results.md.

    python bench/organism_patching.py [--pairs 16] [--figures docs/img]

Colour questions ("what is the color of the shape?") on pairs of easy-VQA drawings that differ
only in the shape's colour (same shape, place, size, background:
xlvlm.apps.organism.colour_pairs); metric: logit(clean colour) - logit(corrupted colour).
Prints markdown; writes patching_*.png into --figures.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

import xlvlm
from xlvlm.apps.organism.colour_pairs import colour_pairs
from xlvlm.data.images import load_image
from xlvlm.patching import attribute, make_pairs, patch
from xlvlm.patching.plots import grid_overlay, heatmap

VISION = ["model.vision_tower.encoder.layers.0", "model.vision_tower.encoder.layers.1"]


def table(result, matrix=None) -> str:
    matrix = result.mean_recovery() if matrix is None else matrix
    labels = result.pairs[0].labels
    lines = ["| site | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for site, row in zip(result.sites, matrix.tolist()):
        lines.append(f"| {site} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    return "\n".join(lines)


def shape_coverage(pair, grid: tuple[int, int]) -> np.ndarray:
    """Per grid cell, the share of its pixels that differ between the two images (the shape)."""
    a = np.asarray(load_image(pair.clean["image"]).convert("RGB"), dtype=np.int16)
    b = np.asarray(load_image(pair.corrupted["image"]).convert("RGB"), dtype=np.int16)
    changed = (np.abs(a - b).sum(-1) > 30).astype(float)
    rows, cols = grid
    h, w = changed.shape
    return changed.reshape(rows, h // rows, cols, w // cols).mean(axis=(1, 3)).reshape(-1)


def groups_section(vlm, pairs, figures: Path) -> None:
    exact = patch(vlm, pairs, positions="groups", batch_size=32)
    quick = attribute(vlm, pairs, positions="groups", batch_size=32)
    mean, approx = exact.mean_recovery(), quick.mean_recovery()
    heatmap(mean, exact.sites, exact.pairs[0].labels, figures / "patching_groups.png",
            f"exact patching, mean recovery over {len(pairs)} colour pairs")
    heatmap(approx, quick.sites, quick.pairs[0].labels, figures / "patching_attribution.png",
            f"attribution patching, mean estimated recovery over {len(pairs)} colour pairs")
    per_pair = torch.stack([p.recovery for p in exact.pairs])  # (N, S, C)
    block0, last = exact.sites.index("0"), len(exact.sites) - 1
    print("Exact patching, mean recovery over the pairs:\n")
    print(table(exact))
    print(f"\nBlock 0's output: image tokens {mean[block0, 0]:.3f} (min over pairs {per_pair[:, block0, 0].min():.3f}); "
          f"question {mean[block0, 1]:.3f}, template {mean[block0, 2]:.3f}, last token {mean[block0, 3]:.3f} "
          f"(max over pairs of the three: {per_pair[:, block0, 1:].max():.3f}). "
          f"Block {exact.sites[last]}'s output: last token {mean[last, 3]:.3f} (min {per_pair[:, last, 3].min():.3f}).")
    moved = next(s for s in range(len(exact.sites)) if mean[s, 3] > mean[s, 0])
    print(f"The answer moves from the image tokens to the last token between site {exact.sites[moved - 1]} "
          f"(image {mean[moved - 1, 0]:.3f}, last {mean[moved - 1, 3]:.3f}) and site {exact.sites[moved]} "
          f"(image {mean[moved, 0]:.3f}, last {mean[moved, 3]:.3f}).\n")
    pairwise = [spearmanr(e.recovery.flatten(), a.recovery.flatten()).statistic for e, a in zip(exact.pairs, quick.pairs)]
    print("Attribution patching (one forward and one backward pass per pair), mean estimated recovery:\n")
    print(table(quick))
    print(f"\nSpearman of attribution vs exact over the {mean.numel()} cells: mean maps "
          f"{spearmanr(mean.flatten(), approx.flatten()).statistic:.3f}; per pair median {np.median(pairwise):.3f} "
          f"(min {min(pairwise):.3f}).\n")


def tracing_section(vlm, clean, figures: Path) -> None:
    traced = patch(vlm, make_pairs(clean, answers=None), positions="groups", metric="prob", noise=3.0, seed=0,
                   batch_size=32)
    # Recovery of the mean probability: a pair the noise hardly moves would make its own ratio
    # explode, so the pairs are pooled before dividing.
    clean_p = np.mean([p.clean for p in traced.pairs])
    noised_p = np.mean([p.corrupted for p in traced.pairs])
    patched = torch.stack([p.patched for p in traced.pairs]).nanmean(dim=0)
    pooled = (patched - noised_p) / (clean_p - noised_p)
    heatmap(pooled, traced.sites, traced.pairs[0].labels, figures / "patching_tracing.png",
            "causal tracing (noise 3 sd on the image embeddings), recovery of the mean P(colour)")
    hit = sum(p.clean - p.corrupted > 0.1 for p in traced.pairs)
    print(f"Causal tracing (no pairs: noise of 3 standard deviations on the image tokens' embeddings, seed 0; "
          f"metric P(clean colour): clean {clean_p:.3f}, noised {noised_p:.3f} on average; the noise lowers it by more "
          f"than 0.1 in {hit} of {len(traced.pairs)} images), recovery of the mean probability:\n")
    print(table(traced, pooled))
    print()


def grid_section(vlm, pairs, figures: Path) -> None:
    result = patch(vlm, pairs, layers=[*VISION, "embed", 0], positions="grid", batch_size=32)
    first = result.pairs[0]
    grid_overlay(first.image, first.recovery, result.sites, first.grid, first.extra, figures / "patching_grid.png",
                 f"pair {first.id}: recovery per image cell (vision tower layers 0-1, embeddings, block 0)")
    under, elsewhere, single = {s: [] for s in result.sites}, {s: [] for s in result.sites}, []
    for pair, source in zip(result.pairs, pairs):
        cover = shape_coverage(source, pair.grid)
        for s, site in enumerate(result.sites):
            cells = pair.recovery[s, pair.extra:].numpy()
            under[site].extend(cells[cover >= 0.25])
            elsewhere[site].extend(cells[cover == 0])
    print("Image grid (one cell per image token of the 4 x 4 grid, plus the class token), mean single-cell recovery "
          "of the cells at least a quarter covered by the shape and of the cells it does not touch:\n")
    print("| site | cells under the shape | cells off the shape | class token |\n|---|---|---|---|")
    mean = result.mean_recovery()
    for s, site in enumerate(result.sites):
        print(f"| {site} | {np.mean(under[site]):.3f} | {np.mean(elsewhere[site]):.3f} | {mean[s, 0]:.3f} |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--figures", default="docs/img")
    args = parser.parse_args()
    torch.set_num_threads(1)
    figures = Path(args.figures)
    vlm = xlvlm.organism.load("original")
    with tempfile.TemporaryDirectory() as folder:
        clean, corrupted = colour_pairs(folder, n=args.pairs, seed=0)
        pairs = make_pairs(clean, corrupted)
        print(f"{len(pairs)} colour pairs (seed 0), organism 'original'.\n")
        groups_section(vlm, pairs, figures)
        tracing_section(vlm, clean, figures)
        grid_section(vlm, pairs, figures)
        tokens = patch(vlm, pairs[:1], positions="tokens", batch_size=32)
        heatmap(tokens.pairs[0].recovery, tokens.sites, [t.split(":", 1)[1] for t in tokens.pairs[0].labels],
                figures / "patching_tokens.png", f"pair {tokens.pairs[0].id}: recovery per prompt token")


if __name__ == "__main__":
    main()
