"""``SteeringVector.train``: a steering vector from two lists of samples, extracted in memory.

The rows come from the extractor's own teacher-forced batch step (the same forward pass and
token selection as ``xlvlm.extract``), kept in memory: nothing is written to a folder.
"""

from __future__ import annotations

from typing import Sequence

import torch

from xlvlm.errors import XlvlmError
from xlvlm.steer import aggregators as agg


def _samples(value, name: str) -> list[dict]:
    if isinstance(value, (str, dict)) or not isinstance(value, Sequence):
        raise XlvlmError(f"{name} must be a list of samples ({{'id', 'image', 'prompt'}} dicts), "
                         f"not a {type(value).__name__}")
    if not value:
        raise XlvlmError(f"{name} is empty: give at least one sample")
    bad = next((i for i, s in enumerate(value) if not isinstance(s, dict)), None)
    if bad is not None:
        raise XlvlmError(f"{name}[{bad}] is a {type(value[bad]).__name__}, not a sample dict "
                         f"{{'id', 'image', 'prompt'}}")
    return list(value)


def _split_pairs(pairs) -> tuple[list[dict], list[dict]]:
    if isinstance(pairs, (str, dict)) or not isinstance(pairs, Sequence) or not pairs:
        raise XlvlmError("without negative=, positive must be a non-empty list of (negative, positive) sample pairs")
    if not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
        raise XlvlmError("without negative=, positive must be a list of (negative, positive) sample pairs; "
                         "give negative=[...] for two lists")
    return _samples([p[1] for p in pairs], "positive"), _samples([p[0] for p in pairs], "negative")


def rows_in_memory(vlm, samples: list[dict], keys: list[str], selector, batch_size: int
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Selected rows of ``samples``: ({key: (R, D)}, row_sample (R,), present (N,) bool)."""
    from xlvlm.extract.run import extract_batch_teacher_forced

    rows: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    row_sample, present = [], []
    for first in range(0, len(samples), batch_size):
        result = extract_batch_teacher_forced(vlm, samples[first:first + batch_size], keys, selector)
        for key in keys:
            rows[key].append(result.rows[key].float())
        row_sample.append(result.row_sample + first)
        present.extend(result.present)
    return {k: torch.cat(v) for k, v in rows.items()}, torch.cat(row_sample), torch.tensor(present, dtype=torch.bool)


def train_vector(cls, vlm, positive, negative, layers, method, select: str, batch_size: int, options: dict):
    from xlvlm.extract.selectors import parse_selector
    from xlvlm.hooks import resolve_layers
    from xlvlm.steer.apply import require_vlm
    from xlvlm.steer.vector import _aggregate, _settings, _with_details, check_finite

    require_vlm(vlm, "SteeringVector.train")
    aggregator = method if callable(method) else agg.aggregator_named(method)
    if negative is None:
        positive, negative = _split_pairs(positive)
    else:
        positive, negative = _samples(positive, "positive"), _samples(negative, "negative")
    pairs = getattr(aggregator, "needs_pairs", False)
    if pairs and len(positive) != len(negative):
        raise XlvlmError(f"{agg.name_of(aggregator)} needs pairs: got {len(negative)} negative and "
                         f"{len(positive)} positive samples; give lists of the same length (row i of each a pair)")
    if batch_size < 1:
        raise XlvlmError(f"batch size must be >= 1, not {batch_size}")
    selector = parse_selector(select) if isinstance(select, str) else select
    if pairs and selector.rows_per_sample != 1:
        raise XlvlmError(f"selector {selector.spec!r} gives several rows per sample; paired methods need one")
    keys = [ref.key for ref in resolve_layers(vlm, layers)]
    source_rows, source_of, source_present = rows_in_memory(vlm, negative, keys, selector, batch_size)
    target_rows, target_of, target_present = rows_in_memory(vlm, positive, keys, selector, batch_size)
    both = source_present & target_present if pairs else None
    vectors, details = {}, {}
    for key in keys:
        if pairs:  # one row per sample: row i is sample i
            s, t = source_rows[key][both], target_rows[key][both]
        else:
            s, t = source_rows[key][source_present[source_of]], target_rows[key][target_present[target_of]]
        if len(s) == 0 or len(t) == 0:
            raise XlvlmError(f"layer {key}: the selector {selector.spec!r} found no token in the "
                             f"{'negative' if len(s) == 0 else 'positive'} samples{' (as pairs)' if pairs else ''}")
        vectors[key], info = _aggregate(aggregator, s, t, options)
        if info:
            details[key] = info
    method_name = agg.name_of(aggregator)
    check_finite(vectors, f"{method_name} from the samples", "the model's states overflow float32")
    meta = {"method": method_name, "model": vlm.name, "layers": keys, "selector": selector.spec,
            "n_positive": len(positive), "n_negative": len(negative)}
    meta.update(_settings(aggregator, options))
    return cls(vectors, _with_details(meta, details))
