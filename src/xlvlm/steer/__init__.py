"""Steering: vectors from two sets of representations, applied during generation."""

from xlvlm.steer.condition import Condition
from xlvlm.steer.vector import METHODS, SteeringVector

__all__ = ["SteeringVector", "Condition", "METHODS"]
