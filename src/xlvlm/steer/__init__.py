"""Steering: vectors from two sets of representations, applied during generation.

Every kind of steering implements one protocol (:class:`Steering`, :mod:`xlvlm.steer.protocol`:
the vector(s) for a batch at given layers) and is applied by the same hooks
(:mod:`xlvlm.steer.apply`): :class:`SteeringVector` (fixed), :class:`PerSampleSteering` (P2S,
one vector per sample from paired stores), :class:`LearnedSteering` (L2S, a small network
predicting a sample's vector from its own state) and :class:`Gated` (any of them behind a
:class:`Condition`). Generating under steering: :func:`xlvlm.steer.run.predict`.

Strategies are functions: :mod:`xlvlm.steer.aggregators` (how a vector is made from rows) and
:mod:`xlvlm.steer.operators` (how it edits the residual stream); their names, and the other
names steering accepts, are in :mod:`xlvlm.steer.registry`.
"""

from xlvlm.lazy import lazy_exports

# public name -> the module that defines it, imported on first use: the command line reads
# xlvlm.steer.registry without paying for torch
_EXPORTS = {
    "SteeringVector": "xlvlm.steer.vector",
    "PerSampleSteering": "xlvlm.steer.per_sample",
    "LearnedSteering": "xlvlm.steer.learned",
    "Condition": "xlvlm.steer.condition",
    "Gated": "xlvlm.steer.protocol",
    "Steering": "xlvlm.steer.protocol",
    "SteeringHandle": "xlvlm.steer.apply",
    "METHODS": "xlvlm.steer.registry",
}
__all__ = [*_EXPORTS, "aggregators", "operators"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
