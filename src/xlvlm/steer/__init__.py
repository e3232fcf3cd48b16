"""Steering: vectors from two sets of representations, applied during generation.

Every kind of steering implements one protocol (:class:`Steering`, :mod:`xlvlm.steer.protocol`:
the vector(s) for a batch at given layers) and is applied by the same hooks
(:mod:`xlvlm.steer.apply`): :class:`SteeringVector` (fixed), :class:`PerSampleSteering` (P2S,
one vector per sample from paired stores), :class:`LearnedSteering` (L2S, a small network
predicting a sample's vector from its own state) and :class:`Gated` (any of them behind a
:class:`Condition`). Generating under steering: :func:`xlvlm.steer.run.predict`.

Strategies are functions: :mod:`xlvlm.steer.aggregators` (how a vector is made from rows) and
:mod:`xlvlm.steer.operators` (how it edits the residual stream).
"""

from xlvlm.steer import aggregators, operators
from xlvlm.steer.apply import SteeringHandle
from xlvlm.steer.condition import Condition
from xlvlm.steer.learned import LearnedSteering
from xlvlm.steer.per_sample import PerSampleSteering
from xlvlm.steer.protocol import Gated, Steering
from xlvlm.steer.vector import METHODS, SteeringVector

__all__ = ["SteeringVector", "PerSampleSteering", "LearnedSteering", "Condition", "Gated", "Steering",
           "SteeringHandle", "METHODS",
           "aggregators", "operators"]
