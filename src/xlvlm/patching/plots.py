"""Figures of a patching result: recovery heatmaps and, for the image grid, the recovery per
site laid over the picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from xlvlm.figures import new_figure, save_figure

CMAP = "RdBu_r"  # 0 white, recovery red, overshoot the other way blue


def heatmap(matrix: torch.Tensor, sites: list[str], labels: list[str], path, title: str) -> Path:
    """Recovery (S, C): sites down, cells (groups or tokens, labelled) across; NaN is grey."""
    values = matrix.float().numpy()
    width = min(max(4.0, 0.45 * len(labels) + 2.0), 40.0)
    fig, ax = new_figure(figsize=(width, 0.45 * len(sites) + 1.8))
    image = ax.imshow(np.ma.masked_invalid(values), cmap=CMAP, vmin=-1, vmax=1, aspect="auto")
    image.cmap.set_bad("#cccccc")
    ax.set_xticks(range(len(labels)), labels, rotation=90 if len(labels) > 6 else 0, fontsize=8)
    ax.set_yticks(range(len(sites)), sites, fontsize=8)
    ax.set_xlabel("positions")
    ax.set_ylabel("site (layer)")
    if values.size <= 80:
        for (s, c), value in np.ndenumerate(values):
            if not np.isnan(value):
                ax.text(c, s, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(value) > 0.6 else "black")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="recovery")
    return save_figure(fig, path)


def grid_overlay(image, matrix: torch.Tensor, sites: list[str], grid: tuple[int, int], extra: int, path,
                 title: str) -> Path:
    """For each site, the picture with its image cells' recovery (a rows x cols grid after the
    ``extra`` leading cells) laid over it."""
    from xlvlm.data.images import load_image

    picture = np.asarray(load_image(image).convert("RGB")) if image is not None else None
    fig, axes = new_figure(1, len(sites), figsize=(2.2 * len(sites), 2.6), squeeze=False)
    values = matrix.float().numpy()
    for ax, site, row in zip(axes[0], sites, values):
        cells = row[extra:extra + grid[0] * grid[1]].reshape(grid)
        if picture is not None:
            ax.imshow(picture, extent=(0, grid[1], grid[0], 0))
        shown = ax.imshow(np.ma.masked_invalid(cells), cmap=CMAP, vmin=-1, vmax=1, alpha=0.6,
                          extent=(0, grid[1], grid[0], 0))
        name = site if len(site) <= 14 else "..." + ".".join(site.split(".")[-2:])  # a module name: its tail
        ax.set_title(name + (f"  (cls {row[0]:.2f})" if extra and not np.isnan(row[0]) else ""), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.colorbar(shown, ax=list(axes[0]), label="recovery", shrink=0.8)
    return save_figure(fig, path)
