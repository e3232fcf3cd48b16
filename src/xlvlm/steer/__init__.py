"""Steering: vectors from two sets of representations, applied during generation.

Input-dependent steering: :class:`PerSampleSteering` (P2S, one vector per sample from paired
stores) and :class:`LearnedSteering` (L2S, a small network predicting a sample's vector from its
own state), applied through the same hooks (:mod:`xlvlm.steer.apply`).

Strategies are functions: :mod:`xlvlm.steer.aggregators` (how a vector is made from rows) and
:mod:`xlvlm.steer.operators` (how it edits the residual stream).
"""

from xlvlm.steer import aggregators, operators
from xlvlm.steer.apply import Steering
from xlvlm.steer.condition import Condition
from xlvlm.steer.learned import LearnedSteering
from xlvlm.steer.per_sample import PerSampleSteering
from xlvlm.steer.vector import METHODS, SteeringVector

__all__ = ["SteeringVector", "PerSampleSteering", "LearnedSteering", "Condition", "Steering", "METHODS",
           "aggregators", "operators"]
