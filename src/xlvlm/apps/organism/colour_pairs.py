"""Patching pairs for the organism: the same easy-VQA drawing in two colours.

Each pair is one shape at one place and size on one background, drawn twice (same random
draw, :func:`~xlvlm.apps.organism.data.draw_shape`) with two different colours, asked the same
colour question; the answers are the two colours. Only the shape's pixels differ, so the
prompts align token for token.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xlvlm.apps.organism.data import COLOR_NAMES, SHAPES, draw_shape

COLOUR_QUESTION = "what is the color of the shape?"
# Colours the organism tells apart well on a light background (gray is close to it).
PAIR_COLOURS = ("red", "green", "blue", "yellow", "black", "teal", "brown")


def colour_pairs(folder: str | Path, n: int = 8, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(clean, corrupted) samples of ``n`` colour pairs, their images written to ``folder``.

    Pair ``i`` draws shape ``SHAPES[i % 3]``; its two colours are drawn from
    :data:`PAIR_COLOURS` without repeat. Samples carry ``id`` (shared by the two), ``image``,
    ``prompt`` (:data:`COLOUR_QUESTION`) and ``answer`` (the colour)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pick = np.random.default_rng(seed)
    clean, corrupted = [], []
    for i in range(n):
        shape = SHAPES[i % len(SHAPES)]
        colours = [str(c) for c in pick.choice(PAIR_COLOURS, size=2, replace=False)]
        draw_seed = int(pick.integers(2**31))
        for colour, out, tag in zip(colours, (clean, corrupted), ("clean", "corrupted")):
            path = folder / f"pair{i}_{tag}_{colour}_{shape}.png"
            draw_shape(np.random.default_rng(draw_seed), shape, colour).save(path)
            out.append({"id": f"pair{i}", "image": str(path), "prompt": COLOUR_QUESTION, "answer": colour})
    return clean, corrupted


assert set(PAIR_COLOURS) <= set(COLOR_NAMES)
