"""What patching found: per pair, the recovery of every (site, cell), and how to read it back."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


def _listed(matrix: torch.Tensor) -> list[list[float | None]]:
    """A (S, C) tensor as JSON rows, NaN as null."""
    return [[None if math.isnan(v) else round(v, 6) for v in row] for row in matrix.tolist()]


@dataclass
class PairResult:
    """One pair: ``labels`` of its cells (C,), ``recovery`` and ``patched`` metric (S, C) (NaN
    where a cell has no place at a site), the ``clean`` and ``corrupted`` metric, the prompt's
    ``tokens``, and for a grid layout ``grid`` (rows, cols) after ``extra`` leading cells."""

    id: str
    labels: list[str]
    recovery: torch.Tensor
    patched: torch.Tensor
    clean: float
    corrupted: float
    tokens: list[str] = field(default_factory=list)
    grid: tuple[int, int] | None = None
    extra: int = 0
    image: str | None = None
    prompt: str = ""
    answers: tuple[str, ...] = ()
    traced: bool = False

    @classmethod
    def of(cls, prep, clean: float, corrupted: float, patched: torch.Tensor, recovery: torch.Tensor) -> "PairResult":
        image = prep.pair.clean.get("image")
        return cls(prep.pair.id, list(prep.cells.labels), recovery, patched, clean, corrupted, list(prep.pieces),
                   prep.cells.grid, prep.cells.extra, image if isinstance(image, str) else None,
                   prep.pair.clean.get("prompt", ""), tuple(prep.pair.answers), prep.tracing)

    def to_json(self) -> dict:
        return {"id": self.id, "labels": self.labels, "clean": self.clean, "corrupted": self.corrupted,
                "recovery": _listed(self.recovery), "tokens": self.tokens,
                "grid": list(self.grid) if self.grid else None, "extra": self.extra, "image": self.image,
                "prompt": self.prompt, "answers": list(self.answers), "traced": self.traced}


@dataclass
class PatchResult:
    """``method`` ("exact" or "attribution"), ``metric``, ``positions`` layout, ``sites`` (S,
    row labels), and one :class:`PairResult` per pair."""

    method: str
    metric: str
    positions: str
    sites: list[str]
    pairs: list[PairResult]

    def recovery(self, pair: str | int = 0) -> torch.Tensor:
        """The recovery (S, C) of one pair, by id or index."""
        if isinstance(pair, int):
            return self.pairs[pair].recovery
        return next(p for p in self.pairs if p.id == pair).recovery

    def mean_recovery(self) -> torch.Tensor | None:
        """The mean recovery over pairs (S, C), ignoring NaN; None when pairs' cells differ
        (the tokens layout over prompts of different lengths)."""
        if not self.pairs or len({tuple(p.labels) for p in self.pairs}) != 1:
            return None
        return torch.stack([p.recovery for p in self.pairs]).nanmean(dim=0)

    def to_json(self) -> dict:
        mean = self.mean_recovery()
        return {"method": self.method, "metric": self.metric, "positions": self.positions, "sites": self.sites,
                "labels": self.pairs[0].labels if mean is not None else None,
                "mean_recovery": _listed(mean) if mean is not None else None,
                "pairs": [p.to_json() for p in self.pairs]}

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every pair's recovery and patched metric, keyed ``"<index>/recovery"``, ``"<index>/patched"``."""
        out = {}
        for i, pair in enumerate(self.pairs):
            out[f"{i}/recovery"] = pair.recovery.float()
            out[f"{i}/patched"] = pair.patched.float()
        return out
