"""Extraction: selectors, the feature store, and the batched extraction loop."""

from xlvlm.extract.memory import InMemoryStore
from xlvlm.extract.run import extract
from xlvlm.extract.selectors import parse_selector
from xlvlm.extract.store import FeatureStore

__all__ = ["extract", "InMemoryStore", "parse_selector", "FeatureStore"]
