"""Steering at a stated scale: any kind of steering with every vector rescaled, so that alpha
means the same thing whatever made the vectors.

A vector's norm depends on how it was made (a mean over answer tokens or one token's state, two
framings of a question or two forced answers): with raw vectors the right alpha differs by
construction. :class:`Normalized` divides each vector (each row, for per-sample and learned
steering) by its own norm and multiplies it by ``scale[layer]``; with the scale from
:func:`typical_state_norm`, alpha = 1 adds a vector as long as a typical state of that layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from xlvlm.errors import XlvlmError
from xlvlm.steer.protocol import Wrapping


def typical_state_norm(vlm, samples: Sequence[dict], layers, n: int = 32, batch_size: int = 8) -> dict[str, float]:
    """``{layer key: mean norm of the last prompt token's state}`` over the first ``n`` samples."""
    import xlvlm

    chosen = list(samples)[:n]
    if not chosen:
        raise XlvlmError("typical_state_norm: no samples to measure the layer's states on")
    store = xlvlm.extract(vlm, chosen, layers=list(layers), select="last-prompt", batch_size=batch_size,
                          progress=False)
    return {key: float(store.features(key, present_only=True).float().norm(dim=1).mean()) for key in store.layers}


@dataclass
class Normalized(Wrapping):
    """``steering`` with each vector at norm ``scale[layer]`` (1 for a layer not in ``scale``)."""

    steering: object
    scale: dict = field(default_factory=dict)

    @property
    def condition(self):
        return getattr(self.steering, "condition", None)

    def batch_vectors(self, states, sample_ids) -> dict[str, torch.Tensor]:
        out = {}
        for layer, vectors in self.steering.batch_vectors(states, sample_ids).items():
            norms = vectors.norm(dim=-1, keepdim=True)
            unit = torch.where(norms > 0, vectors / norms.clamp_min(torch.finfo(vectors.dtype).tiny), vectors)
            out[layer] = unit * float(self.scale.get(layer, 1.0))
        return out
