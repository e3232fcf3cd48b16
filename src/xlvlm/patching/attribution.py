"""Attribution patching: the first-order estimate of every patch from one forward and one
backward pass of the corrupted run (plus the clean run that exact patching needs too).

Patching site ``s`` at positions ``P`` changes the metric by about
``sum_{t in P} (clean_s[t] - corrupted_s[t]) . d metric / d corrupted_s[t]``; divided by
``m(clean) - m(corrupted)`` it estimates the recovery. It is exact for a metric linear in the
state and drifts where the model is far from linear between the two runs (e.g. a softmax that
saturates), so it is a quick map that tells where to run exact patching, not its substitute.
"""

from __future__ import annotations

import torch

from xlvlm.errors import XlvlmError
from xlvlm.patching.exact import _chunks, prepare_pairs
from xlvlm.patching.metric import recovery
from xlvlm.patching.registry import METHODS
from xlvlm.patching.result import PairResult, PatchResult
from xlvlm.patching.runs import Prepared, Row, clean_run, read_metric, vision_positions
from xlvlm.patching.sites import resolve_sites


def _estimates(prep: Prepared, b: int, sites, states: dict, grads: dict) -> torch.Tensor:
    """(S, C) first-order metric change of patching each cell at each site for row ``b``."""
    out = torch.full((len(sites), len(prep.cells.positions)), float("nan"))
    for s, site in enumerate(sites):
        if grads[site.key] is None:
            continue
        clean = prep.states[site.key].float()
        corrupted = states[site.key][b, :clean.shape[0]].detach().float().cpu()
        per_position = ((clean - corrupted) * grads[site.key][b, :clean.shape[0]].float().cpu()).sum(-1)
        for c, positions in enumerate(prep.cells.positions):
            if site.vision:
                positions = vision_positions(prep, positions, clean.shape[0])
            if positions:
                out[s, c] = per_position[positions].sum()
    return out


# params: the documented one-call API (docs/patching.md), the same keywords as patch(); result.json records them
def attribute(vlm, pairs, layers=None, positions: str = "groups", metric: str = "logit-diff",
              batch_size: int = 8, noise: float = 3.0, seed: int = 0, progress: bool = False) -> PatchResult:
    """Attribution patching: the arguments and result of :func:`xlvlm.patching.patch`, with each
    cell's recovery estimated to first order (the ``patched`` metric is ``m(corrupted)`` plus
    the estimate)."""
    from xlvlm.progress import bar

    from xlvlm.hooks import require_vlm

    require_vlm(vlm, "attribution patching")
    if batch_size < 1:
        raise XlvlmError(f"batch size must be at least 1, not {batch_size}")
    sites = resolve_sites(vlm, layers)
    results = []
    groups = list(_chunks(list(pairs), batch_size))
    for group in bar(groups, desc="attribute", enabled=progress, unit="batch", leave=False):
        preps = prepare_pairs(vlm, group, positions, metric)
        clean = clean_run(vlm, preps, sites, metric, noise, seed).cpu()
        states: dict[str, torch.Tensor] = {}
        values = read_metric(vlm, [Row(p, True) for p in preps], sites, metric, states, grad=True)
        keys = [s.key for s in sites if states[s.key].requires_grad]
        found = torch.autograd.grad(values.sum(), [states[k] for k in keys], allow_unused=True)
        grads = {s.key: None for s in sites} | dict(zip(keys, found))
        corrupted = values.detach().cpu()
        for b, prep in enumerate(preps):
            change = _estimates(prep, b, sites, states, grads)
            results.append(PairResult.of(prep, float(clean[b]), float(corrupted[b]), corrupted[b] + change,
                                         recovery(corrupted[b] + change, clean[b], corrupted[b])))
    return PatchResult(METHODS.name_of(attribute), metric, positions, [s.key for s in sites], results)
