"""Exact activation patching: one patched forward pass per (pair, site, cell), batched.

For every pair, the clean run's states are kept at every site; then the corrupted run is
repeated with the clean states copied in at one site and one cell at a time, and the metric's
recovery is measured. Rows of several pairs, sites and cells share each forward pass.
"""

from __future__ import annotations

import torch

from xlvlm.errors import XlvlmError
from xlvlm.patching.metric import recovery
from xlvlm.patching.pairs import Pair
from xlvlm.patching.positions import parse_layout
from xlvlm.patching.registry import METHODS
from xlvlm.patching.result import PairResult, PatchResult
from xlvlm.patching.runs import Prepared, Row, clean_run, prepare, read_metric, vision_positions
from xlvlm.patching.sites import resolve_sites


def cell_patch(prep: Prepared, site, cell: int) -> tuple[list[int], torch.Tensor] | None:
    """(positions, clean values) of one cell at one site; None where the cell has no place
    there (an empty group, or a text token at a vision site)."""
    positions = prep.cells.positions[cell]
    if not positions:
        return None
    states = prep.states[site.key]
    if site.vision:
        positions = vision_positions(prep, positions, states.shape[0])
        if positions is None:
            return None
    return positions, states[positions]


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _patched(vlm, preps: list[Prepared], sites, metric: str, batch_size: int, bar) -> list[torch.Tensor]:
    """Per prep, the metric of every (site, cell) patch (S, C); NaN where a cell has no place."""
    out = [torch.full((len(sites), len(p.cells.positions)), float("nan")) for p in preps]
    jobs = []
    for i, prep in enumerate(preps):
        for s, site in enumerate(sites):
            for c in range(len(prep.cells.positions)):
                patch = cell_patch(prep, site, c)
                if patch is not None:
                    jobs.append((i, s, c, Row(prep, True, {site.key: patch})))
    bar.total = (bar.total or 0) + len(jobs)
    bar.refresh()
    encoded: dict = {}  # chunks of the same rows' prompts share one encoding
    for chunk in _chunks(jobs, batch_size):
        values = read_metric(vlm, [job[3] for job in chunk], sites, metric, cache=encoded).cpu()
        for (i, s, c, _), value in zip(chunk, values):
            out[i][s, c] = value
        bar.update(len(chunk))
    return out


def prepare_pairs(vlm, pairs: list[Pair], positions: str, metric: str) -> list[Prepared]:
    layout = ("all", 1) if positions == "all" else parse_layout(positions)
    return [prepare(vlm, pair, layout, metric) for pair in pairs]


def baselines(vlm, preps: list[Prepared], sites, metric: str, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean, corrupted) metric per prep (B,), keeping the clean states for patching."""
    clean = clean_run(vlm, preps, sites, metric, noise, seed).cpu()
    corrupted = read_metric(vlm, [Row(p, True) for p in preps], sites, metric).cpu()
    return clean, corrupted


# params: the documented one-call API (docs/patching.md); result.json records the keywords
def patch(vlm, pairs: list[Pair], layers=None, positions: str = "groups", metric: str = "logit-diff",
          batch_size: int = 8, noise: float = 3.0, seed: int = 0, progress: bool = False) -> PatchResult:
    """Exact activation patching of ``pairs`` (:func:`xlvlm.patching.make_pairs`) at every site of
    ``layers`` (default: embeddings and every block's output) and every cell of ``positions``
    ("groups", "tokens", "grid", "grid:K", or "all": the whole prompt as one cell).

    Pairs without a corrupted sample are traced: their corrupted run adds Gaussian noise of
    ``noise`` times the clean image embeddings' standard deviation (seeded) to the image tokens'
    embeddings. ``batch_size``: pairs prepared together, and rows per forward pass.
    Returns a :class:`PatchResult` (per pair: recovery (sites, cells), metrics, labels).
    """
    from xlvlm.progress import bar as labelled_bar

    from xlvlm.hooks import require_vlm

    require_vlm(vlm, "patching")
    if batch_size < 1:
        raise XlvlmError(f"batch size must be at least 1, not {batch_size}")
    sites = resolve_sites(vlm, layers)
    results = []
    with labelled_bar(total=0, desc="patch", enabled=progress, unit="run", leave=False) as bar:
        for group in _chunks(list(pairs), max(1, batch_size)):
            preps = prepare_pairs(vlm, group, positions, metric)
            clean, corrupted = baselines(vlm, preps, sites, metric, noise, seed)
            for prep, m_clean, m_corr, values in zip(preps, clean, corrupted,
                                                     _patched(vlm, preps, sites, metric, batch_size, bar)):
                results.append(PairResult.of(prep, float(m_clean), float(m_corr), values,
                                             recovery(values, m_clean, m_corr)))
    return PatchResult(METHODS.name_of(patch), metric, positions, [s.key for s in sites], results)
