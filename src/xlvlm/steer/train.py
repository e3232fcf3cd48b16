"""``SteeringVector.train``: a steering vector from two lists of samples, extracted in memory.

Both lists go through ``xlvlm.extract(..., out=None)`` (the same forward pass and token
selection as an extraction to a folder, kept in memory), then ``SteeringVector.from_stores``.
"""

from __future__ import annotations

from typing import Sequence

from xlvlm.errors import XlvlmError
from xlvlm.steer import aggregators as agg


def _split_pairs(pairs) -> tuple[list[dict], list[dict]]:
    """(positive, negative) lists from a list of (negative, positive) pairs."""
    if isinstance(pairs, (str, dict)) or not isinstance(pairs, Sequence) or not pairs or \
            not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
        raise XlvlmError("without negative=, positive must be a non-empty list of (negative, positive) sample "
                         "pairs; give negative=[...] for two lists")
    return [p[1] for p in pairs], [p[0] for p in pairs]


# params: SteeringVector.train's documented keywords, passed through
def train_vector(cls, vlm, positive, negative, layers, method, select, batch_size: int, options: dict):
    """See :meth:`SteeringVector.train`. Paired methods pair row i of each list: both copies of
    pair i get the id ``"pair-i"`` (in memory only), which is what ``from_stores`` pairs by."""
    from xlvlm.data.samples import check_samples
    from xlvlm.features.run import extract
    from xlvlm.hooks import require_vlm

    require_vlm(vlm, "SteeringVector.train")
    aggregator = method if callable(method) else agg.aggregator_named(method)
    if negative is None:
        positive, negative = _split_pairs(positive)
    positive, negative = check_samples(positive, where="positive"), check_samples(negative, where="negative")
    if not positive or not negative:
        raise XlvlmError(f"{'positive' if not positive else 'negative'} holds no sample: give at least one")
    if getattr(aggregator, "needs_pairs", False):
        if len(positive) != len(negative):
            raise XlvlmError(f"{agg.name_of(aggregator)} needs pairs: got {len(negative)} negative and "
                             f"{len(positive)} positive samples; give lists of the same length (row i of each "
                             f"a pair) or (negative, positive) pairs")
        positive = [dict(s, id=f"pair-{i}") for i, s in enumerate(positive)]
        negative = [dict(s, id=f"pair-{i}") for i, s in enumerate(negative)]
    stores = [extract(vlm, samples, layers=layers, select=select, batch_size=batch_size, progress=False)
              for samples in (negative, positive)]
    sv = cls.from_stores(*stores, layers=stores[0].layers, aggregator=aggregator, **options)
    for key in ("source", "target", "target_model"):  # "<in memory>" says nothing
        sv.metadata.pop(key, None)
    sv.metadata.update(n_positive=len(positive), n_negative=len(negative))
    return sv
