"""Extraction: selectors, the feature store, and the batched extraction loop."""

from xlvlm.extract.run import extract
from xlvlm.extract.selectors import parse_selector
from xlvlm.extract.store import FeatureStore, InMemoryStore

__all__ = ["extract", "InMemoryStore", "parse_selector", "FeatureStore"]
