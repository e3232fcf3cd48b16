"""Steering strategies as plain functions: ``(source_rows, target_rows, **options) -> vector``.

Notation: S (N_s, D) source rows, T (N_t, D) target rows at one layer (float32). Paired
aggregators (``needs_pairs = True``) get aligned rows, N_s == N_t, row i of S and row i of T
from the same sample (``SteeringVector.from_stores`` pairs them by sample id).

  mean_difference  v = mean(T) - mean(S)                              (shift of means)
  mean_of_shifts   v = mean_i (t_i - s_i)                             (paired)
  pca              u = first right singular vector of the uncentred differences (t_i - s_i),
                   sign chosen so u . mean(t_i - s_i) > 0; v = (u . mean(t_i - s_i)) u   (paired)
  concept          v = V_j - V_i for concepts i -> j of a dictionary learnt on S and T together,
                   i the concept most made of source rows, j the one most made of target rows

An aggregator returns the vector (D,), or ``(vector, details)`` with a JSON-able dict that the
steering vector keeps in its metadata, per layer (the concept method's picked concepts and
purity); the names in its ``row_details`` are also shown in each row of a sweep.
Any function of the same shape works as ``aggregator=``; ``AGGREGATORS`` names the shipped
ones for the command line.
"""

from __future__ import annotations

from typing import Callable

import torch

from xlvlm.errors import XlvlmError
from xlvlm.steer.registry import AGGREGATORS  # the shipped ones by name (the command line's)

Aggregator = Callable[..., "torch.Tensor | tuple[torch.Tensor, dict]"]


def paired(fn: Aggregator) -> Aggregator:
    """Mark an aggregator that needs aligned (paired) rows."""
    fn.needs_pairs = True
    return fn


def _check_pairs(source_rows: torch.Tensor, target_rows: torch.Tensor) -> torch.Tensor:
    if source_rows.shape != target_rows.shape or source_rows.shape[0] == 0:
        raise XlvlmError(f"a paired method needs as many source as target rows, aligned (got "
                         f"{tuple(source_rows.shape)} and {tuple(target_rows.shape)})")
    return target_rows.float() - source_rows.float()


def mean_difference(source_rows: torch.Tensor, target_rows: torch.Tensor) -> torch.Tensor:
    """mean(T) - mean(S): (N_s, D), (N_t, D) -> (D,)."""
    return target_rows.float().mean(0) - source_rows.float().mean(0)


@paired
def mean_of_shifts(source_rows: torch.Tensor, target_rows: torch.Tensor) -> torch.Tensor:
    """mean_i (t_i - s_i) over aligned rows: (P, D), (P, D) -> (D,)."""
    return _check_pairs(source_rows, target_rows).mean(0)


@paired
def pca(source_rows: torch.Tensor, target_rows: torch.Tensor) -> torch.Tensor:
    """The first principal direction of the paired shifts, scaled by the mean shift along it:
    (P, D), (P, D) -> (D,)."""
    diffs = _check_pairs(source_rows, target_rows)
    if diffs.shape[0] < 2:
        raise XlvlmError(f"pca needs at least 2 paired samples to find a principal direction (got "
                         f"{diffs.shape[0]}); use mean-of-shifts for one pair, or more samples")
    mean = diffs.mean(0)
    # Uncentred on purpose: the direction that carries most of the shifts' energy. After
    # centring, a shift shared by all pairs would vanish and only the noise would remain.
    _, _, vh = torch.linalg.svd(diffs, full_matrices=False)
    u = vh[0]
    if u @ mean < 0:
        u = -u
    return (u @ mean) * u


def concept(source_rows: torch.Tensor, target_rows: torch.Tensor, n_concepts: int = 8,
            concept_method: str = "kmeans", seed: int = 0) -> tuple[torch.Tensor, dict]:
    """V_j - V_i from a dictionary of ``n_concepts`` learnt on S and T together:
    (N_s, D), (N_t, D) -> ((D,), {"concepts": [i, j], "purity": [...], "concept_sizes": [...]}).

    Each row belongs to its most active concept (k-means: its cluster). i is the concept whose
    members are the largest share of source rows, j the one whose members are the largest
    share of target rows (ties: the larger concept, then the lower index); purity is [share of
    source rows in i, share of target rows in j]. Raises XlvlmError when i == j: the concepts do
    not separate source from target. k-means components are centroids, at the data's scale;
    other methods' components are rescaled (below), which suits additive dictionaries (snmf,
    nndl, nmf, topk-sae) and not ``simple``.
    """
    from xlvlm.concepts import learn_concepts

    s, t = source_rows.float(), target_rows.float()
    if s.shape[1] != t.shape[1]:
        raise XlvlmError(f"source rows have {s.shape[1]} features, target rows {t.shape[1]}")
    cd = learn_concepts(torch.cat([s, t]), method=concept_method, n_concepts=n_concepts, seed=seed)
    labels = cd.activations.argmax(1)
    is_source = torch.cat([torch.ones(len(s), dtype=torch.bool), torch.zeros(len(t), dtype=torch.bool)])
    sizes = torch.bincount(labels, minlength=cd.n_concepts)
    n_source = torch.bincount(labels[is_source], minlength=cd.n_concepts)
    used = [k for k in range(cd.n_concepts) if sizes[k] > 0]
    share = {k: float(n_source[k]) / float(sizes[k]) for k in used}
    i = max(used, key=lambda k: (share[k], int(sizes[k]), -k))
    j = max(used, key=lambda k: (1.0 - share[k], int(sizes[k]), -k))
    if i == j:
        raise XlvlmError(
            f"the {len(used)} {concept_method} concept(s) learnt on source and target do not separate them "
            f"(every concept holds {100 * share[i]:.0f}% source rows); use another method or layer, or more concepts")
    components = cd.components.float()
    if cd.method not in ("kmeans", "minibatch-kmeans"):
        # Other methods' components have an arbitrary scale (the activations carry the rest):
        # scale each by the mean activation of its members, so the vector is the difference of
        # the two concepts' average contributions to their members' rows.
        for k in (i, j):
            components[k] = components[k] * cd.activations[labels == k, k].float().mean()
    details = {"concepts": [i, j], "purity": [share[i], 1.0 - share[j]],
               "concept_sizes": [int(sizes[i]), int(sizes[j])]}
    return components[j] - components[i], details


concept.row_details = ("concepts", "purity")


def aggregator_named(name: str) -> Aggregator:
    try:
        return AGGREGATORS[name]
    except KeyError:
        raise XlvlmError(f"unknown steering method {name!r}: use one of {', '.join(AGGREGATORS)}") from None


def option_names(aggregator: Aggregator) -> set[str] | None:
    """The options ``aggregator`` takes (its parameters after the two row sets), or None when it
    takes any (``**options``) or its signature cannot be read."""
    import inspect

    try:
        params = list(inspect.signature(aggregator).parameters.values())[2:]
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def name_of(aggregator: Aggregator) -> str:
    """The registry name of a shipped aggregator, else the function's own name."""
    return AGGREGATORS.name_of(aggregator) or getattr(aggregator, "__name__", type(aggregator).__name__)
