"""Per-patch grounding: where in the image a concept fires.

A sample's image-token states H (P, D) at a layer are projected on a concept direction v:
s = H v / |v| (P,), laid out on the patch grid the adapter gives (``vlm.image_grid``: rows x
cols, after dropping a leading extra token such as CLIP's class token) and drawn over the image.
Families whose image tokens form no grid (perceiver latents, tiles) are refused.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from xlvlm.data.images import load_image
from xlvlm.errors import XlvlmError
from xlvlm.hooks import record


def _grid(vlm, batch, index: int, scores: torch.Tensor) -> np.ndarray:
    """Scores of one sample's image tokens (P,) laid out as the adapter says they lie."""
    layout = vlm.image_grid(batch, index)
    if layout is None:
        raise XlvlmError(f"{vlm.family}: its image tokens form no patch grid (see docs/models.md); "
                         f"patch heatmaps need one")
    skip, rows, cols = layout
    if scores.shape[0] != skip + rows * cols:
        raise XlvlmError(f"{vlm.family}: {scores.shape[0]} image tokens, but the adapter's grid is "
                         f"{skip} + {rows} x {cols}")
    return scores[skip:].reshape(rows, cols).float().cpu().numpy()


def patch_heatmaps(vlm, samples: Sequence[dict], layer, directions: torch.Tensor) -> list[np.ndarray]:
    """One (g, g) heatmap per sample: its image tokens projected on ``directions[i]`` (n, D)."""
    if vlm.image_token_id is None:
        raise XlvlmError(f"{vlm.name}: no image token id in the config; patch heatmaps need one")
    batch = vlm.encode(samples)
    with record(vlm, [layer], stop_early=True) as rec:
        vlm.forward(batch)
    states = next(iter(rec.outputs.values()))[0]
    mask = vlm.image_mask(batch)
    maps = []
    for b in range(len(samples)):
        unit = torch.nn.functional.normalize(directions[b].float().to(states.device), dim=0)
        maps.append(_grid(vlm, batch, b, states[b][mask[b]].float() @ unit))
    return maps


def draw_heatmaps(samples: Sequence[dict], maps: Sequence[np.ndarray], titles: Sequence[str], path):
    """Images with their heatmaps overlaid, side by side."""
    from xlvlm.figures import new_figure, save_figure

    n = len(samples)
    fig, axes = new_figure(1, n, figsize=(2.2 * n, 2.5), squeeze=False)
    for ax, sample, heat, title in zip(axes[0], samples, maps, titles):
        image = np.asarray(load_image(sample["image"]))
        h, w = image.shape[:2]
        ax.imshow(image)
        ax.imshow(heat, cmap="inferno", alpha=0.55, extent=(0, w, h, 0), interpolation="bilinear")
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    return save_figure(fig, path)
