"""Helpers for the scale tests: stores written shard by shard, and store equality."""

from __future__ import annotations

import json

import torch

from xlvlm.features.manifest import StoreSettings
from xlvlm.features.store import StoreWriter


def write_jsonl(path, samples):
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    return path


def write_store(path, features: dict, shard_rows: int, present=None, ids=None, fields=None) -> None:
    """A single-row store from {layer: (N, D)} written ``shard_rows`` samples per shard;
    ``present``: (N,) bools (absent rows should be NaN, as extraction writes them); ``fields``:
    N dicts of more metadata (image, prompt, ...)."""
    first = next(iter(features.values()))
    n, d = first.shape
    ids = ids or [f"x{i}" for i in range(n)]
    present = [True] * n if present is None else list(present)
    settings = StoreSettings(**{"model": "", "family": "", "num_layers": None, "hidden_size": d, "layers": list(features),
                "selector": "custom", "rows_per_sample": 1, "teacher_forcing": False, "generation": None,
                "dtype": str(first.dtype).replace("torch.", "")})
    writer = StoreWriter(path, settings, ids)
    for a in range(0, n, shard_rows):
        b = min(n, a + shard_rows)
        rows = [{**(fields[i] if fields else {}), "id": ids[i], "present": bool(present[i]), "rows": 1}
                for i in range(a, b)]
        writer.write_shard({k: v[a:b] for k, v in features.items()}, torch.arange(a, b), rows, [])
    writer.finish()


def assert_same_store(a, b) -> None:
    """Same ids, order, metadata, row map and values (bit for bit, NaN where NaN)."""
    assert a.ids == b.ids
    assert a.samples == b.samples
    assert torch.equal(a.row_sample, b.row_sample)
    assert a.layers == b.layers
    for layer in a.layers:
        torch.testing.assert_close(a.features(layer), b.features(layer), rtol=0, atol=0, equal_nan=True)
