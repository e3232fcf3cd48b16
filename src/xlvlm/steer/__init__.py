"""Steering: vectors from two sets of representations, applied during generation.

Strategies are functions: :mod:`xlvlm.steer.aggregators` (how a vector is made from rows) and
:mod:`xlvlm.steer.operators` (how it edits the residual stream).
"""

from xlvlm.steer import aggregators, operators
from xlvlm.steer.apply import Steering
from xlvlm.steer.condition import Condition
from xlvlm.steer.vector import METHODS, SteeringVector

__all__ = ["SteeringVector", "Condition", "Steering", "METHODS", "aggregators", "operators"]
