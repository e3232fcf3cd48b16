"""Extraction: selectors, the feature store, and the batched extraction loop."""

from xlvlm.features.run import extract
from xlvlm.features.selectors import parse_selector
from xlvlm.features.store import FeatureStore, InMemoryStore

__all__ = ["extract", "InMemoryStore", "parse_selector", "FeatureStore"]
