"""Where to patch in a pair's prompt: cells, each a set of token positions patched together.

Three layouts (``positions=``):

- ``"groups"``: four cells, the image tokens, the question's tokens, the template's other
  tokens (BOS, role markers, the generation prompt) and the last prompt token (the one that
  predicts the answer). A group a prompt lacks is an empty cell (its recovery is NaN).
- ``"tokens"``: one cell per prompt token, labelled with the token.
- ``"grid"`` / ``"grid:K"``: one cell per image token of the image's patch grid, or per K x K
  block of them, in row-major order, so a map folds back onto the picture (the family's
  ``image_grid``; a leading extra image token, e.g. a class token, is its own cell "cls").

The question's tokens are found without knowing the template: the sample is tokenized again
with two other prompts, and the tokens that all three share at the start and at the end are
the template's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from xlvlm.errors import XlvlmError

GROUPS = ("image", "question", "template", "last")
PROBES = ("yes", "no")


@dataclass
class Cells:
    """One pair's cells: ``labels`` (C,), ``positions`` (C lists of sequence positions), and
    for a grid layout ``grid`` = (rows, cols) of the cells after the extra ones (``extra``)."""

    labels: list[str]
    positions: list[list[int]]
    grid: tuple[int, int] | None = None
    extra: int = 0
    tokens: list[str] = field(default_factory=list)


def parse_layout(spec: str) -> tuple[str, int]:
    """"groups" | "tokens" | "grid" | "grid:K" -> (layout, K)."""
    text = str(spec).strip()
    if text in ("groups", "tokens", "grid"):
        return text, 1
    if text.startswith("grid:"):
        try:
            size = int(text[5:])
        except ValueError:
            size = 0
        if size >= 1:
            return "grid", size
    raise XlvlmError(f"positions {spec!r}: use groups, tokens, grid or grid:K (K x K image tokens per cell)")


def _shared_ends(rows: list[list[int]]) -> tuple[int, int]:
    """(prefix, suffix): how many tokens all rows share at the start and at the end."""
    shortest = min(len(r) for r in rows)
    prefix = 0
    while prefix < shortest and len({r[prefix] for r in rows}) == 1:
        prefix += 1
    suffix = 0
    while suffix < shortest - prefix and len({r[-1 - suffix] for r in rows}) == 1:
        suffix += 1
    return prefix, suffix


def question_span(vlm, sample: dict, answer: str, row: list[int]) -> range:
    """The positions of the sample's own prompt text in its real token ``row`` (templated with
    ``answer``): what differs from the same sample templated with the probe prompts."""
    probes = [vlm.encode([dict(sample, prompt=p)], answers=[answer]) for p in PROBES]
    rows = [row] + [b.input_ids[0, :b.lengths[0]].tolist() for b in probes]
    prefix, suffix = _shared_ends(rows)
    return range(prefix, len(row) - suffix)


def group_cells(image: list[int], question: range, prompt_length: int) -> Cells:
    last = prompt_length - 1
    taken = set(image) | {last}
    asked = [p for p in question if p < prompt_length and p not in taken]
    other = [p for p in range(prompt_length) if p not in taken and p not in set(asked)]
    return Cells(list(GROUPS), [list(image), asked, other, [last]])


def token_cells(pieces: list[str], prompt_length: int) -> Cells:
    return Cells([f"{t}:{piece}" for t, piece in enumerate(pieces[:prompt_length])],
                 [[t] for t in range(prompt_length)])


def grid_cells(image: list[int], layout: tuple[int, int, int] | None, size: int, pair_id: str) -> Cells:
    """Cells of K x K image tokens (row-major) over the family's image grid (skip, rows, cols)."""
    if layout is None:
        raise XlvlmError(f"pair {pair_id!r}: this family's image tokens form no patch grid; use --positions groups "
                         f"or tokens")
    skip, rows, cols = layout
    if skip + rows * cols != len(image):
        raise XlvlmError(f"pair {pair_id!r}: {len(image)} image tokens do not form the {rows} x {cols} grid the "
                         f"family reports; use --positions groups or tokens")
    grid = (math.ceil(rows / size), math.ceil(cols / size))
    cells: list[list[int]] = [[] for _ in range(grid[0] * grid[1])]
    for k, position in enumerate(image[skip:]):
        r, c = divmod(k, cols)
        cells[(r // size) * grid[1] + c // size].append(position)
    labels = [f"r{r}c{c}" for r in range(grid[0]) for c in range(grid[1])]
    extra = [["cls"], [image[:skip]]] if skip else [[], []]
    return Cells(extra[0] + labels, extra[1] + cells, grid, skip and 1)
