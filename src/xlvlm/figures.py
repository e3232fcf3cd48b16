"""Figures shared by the workflows: concept grids (thumbnails + words) and bar charts.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``), never pyplot: no
display is needed, and a notebook's own backend and open figures are left alone. Files are
written atomically.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

from xlvlm.data.images import load_image
from xlvlm.errors import XlvlmError


def new_figure(nrows: int = 1, ncols: int = 1, figsize=(6, 4), squeeze: bool = True):
    """(figure, axes) like ``pyplot.subplots``, without pyplot's global state."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def save_figure(fig, path, dpi: int = 110) -> Path:
    """Write ``fig`` atomically. Every text is drawn as written: labels carry user strings and
    model words (``$\\foo$``, ``$5 or $6``) that matplotlib would otherwise parse as mathtext,
    and a parse error would end a run after all its work was done."""
    from matplotlib import rc_context
    from matplotlib.text import Text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with rc_context({"text.parse_math": False}):  # texts created while drawing (tick labels)
        for text in fig.findobj(Text):  # texts created before
            text.set_parse_math(False)
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png", bbox_inches="tight")
    tmp.replace(path)
    return path


def _thumbnail(image_path, size: int) -> np.ndarray:
    try:
        return np.asarray(load_image(image_path).resize((size, size)))
    except XlvlmError:
        return np.full((size, size, 3), 200, dtype=np.uint8)  # a grey tile for a missing image


def concept_grid(panels: Sequence[Sequence[dict]], path, titles: Sequence[str] | None = None,
                 n_images: int = 5, thumb: int = 64) -> Path:
    """Draw concepts as rows; each row has one or more panels side by side.

    panels: for each row (concept), a list of panels ``{"label", "words": [...], "images":
    [paths or PIL images], "captions": [text per image] (optional)}`` (e.g. original | shifted
    | fine-tuned). Each panel shows ``n_images`` thumbnails, each caption (a sample's question
    and answer) under its thumbnail, and the words underneath.
    """
    n_rows = len(panels)
    n_panels = max(len(row) for row in panels) if panels else 1
    captioned = any(panel.get("captions") for row in panels for panel in row)
    row_height = 1.55 if captioned else 1.45
    fig, axes = new_figure(n_rows, n_panels, figsize=(2.6 * n_panels * n_images / 4, row_height * n_rows + 0.4),
                           squeeze=False)
    for r, row in enumerate(panels):
        for p in range(n_panels):
            ax = axes[r][p]
            ax.axis("off")
            if p >= len(row):
                continue
            panel = row[p]
            tiles = [_thumbnail(img, thumb) for img in list(panel.get("images", []))[:n_images]]
            tiles += [np.full((thumb, thumb, 3), 255, dtype=np.uint8)] * (n_images - len(tiles))
            strip = np.concatenate([np.pad(t, ((0, 0), (0, 3), (0, 0)), constant_values=255) for t in tiles], axis=1)
            ax.imshow(strip)
            captions = list(panel.get("captions", []))[:n_images]
            for i, caption in enumerate(captions):  # question and answer under each thumbnail
                text = "\n".join(textwrap.fill(line, width=16, max_lines=2, placeholder="…")
                                  for line in str(caption).splitlines())
                ax.text((i + 0.5) / n_images, -0.04, text, transform=ax.transAxes, fontsize=4, va="top",
                        ha="center")
            # Wrapped here, not by matplotlib: its wrapping measures text as mathtext whenever it
            # holds two '$' (parse_math notwithstanding), and a model's words may.
            words = textwrap.fill(", ".join(map(str, panel.get("words", [])[:6])), width=max(20, 11 * n_images))
            ax.set_title(f"{panel.get('label', '')}", fontsize=7, loc="left")
            ax.text(0, -0.66 if captions else -0.08, words, transform=ax.transAxes, fontsize=7, va="top")
            if r == 0 and titles and p < len(titles):
                ax.annotate(titles[p], (0.5, 1.35), xycoords="axes fraction", ha="center", fontsize=9, weight="bold")
    fig.subplots_adjust(hspace=0.5 if captioned else 0.8)
    return save_figure(fig, path)


def bar_chart(values: dict[str, Sequence[float]], path, labels: Sequence[str], ylabel: str, title: str) -> Path:
    """Grouped bars: one group per label (e.g. concept), one bar per series in ``values``."""
    n = len(labels)
    fig, ax = new_figure(figsize=(max(5, 0.45 * n + 2), 3.2))
    width = 0.8 / max(1, len(values))
    x = np.arange(n)
    for i, (name, series) in enumerate(values.items()):
        ax.bar(x + i * width - 0.4 + width / 2, [0 if v is None else v for v in series], width, label=name)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)
