"""InMemoryStore: features held in memory, with the reading interface of a FeatureStore.

``xlvlm.extract(..., out=None)`` and ``FeatureStore.from_tensors(features, samples)`` return
one. Every consumer of a store (concepts, shift, steering vectors, sweeps) takes it as it takes
a folder: ``features(layer)``, ``samples``, ``layers``, ``present``, ``iter_rows``, ...
``save(folder)`` writes it as a checksummed store folder and returns that FeatureStore.

Samples may keep in-memory PIL images (a notebook's samples); a saved store records each as
:func:`xlvlm.data.images.image_label` (``"<PIL.Image 64x48 RGB sha256:...>"``), not its pixels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import torch

from xlvlm.data.images import image_label
from xlvlm.errors import XlvlmError
from xlvlm.layerkeys import find_layer, layer_key

IN_MEMORY = "<in memory>"


def json_ready(sample: dict) -> dict:
    """A sample's metadata as a store file keeps it: PIL images as their label."""
    image = sample.get("image")
    return sample if image is None or isinstance(image, str) else {**sample, "image": image_label(image)}


def store_from_tensors(features: dict, samples, model: str = "", selector: str = "custom",
                       num_layers: int | None = None) -> "InMemoryStore":
    """An in-memory store of your own features: {layer: (N, D)} and N sample dicts (``id`` at
    least; ``present`` defaults to True). Rows of present samples must be finite."""
    from xlvlm.data.samples import check_samples

    samples = check_samples(samples, need=())
    if not features:
        raise XlvlmError("no features given: pass {layer: (N, D) tensor}")
    tensors = {}
    for layer, value in features.items():
        key = layer_key(layer)
        if key in tensors:
            raise XlvlmError(f"layer {layer!r} is given twice (as {key!r})")
        tensors[key] = torch.as_tensor(value)
    n = len(samples)
    for key, value in tensors.items():
        if value.dim() != 2 or value.shape[0] != n:
            raise XlvlmError(f"features for layer {key} have shape {tuple(value.shape)}; expected ({n}, D)")
        if not value.dtype.is_floating_point:
            raise XlvlmError(f"features for layer {key} are {value.dtype}; give floating-point features")
    hidden = {value.shape[1] for value in tensors.values()}
    if len(hidden) > 1:
        raise XlvlmError(f"layers have different widths {sorted(hidden)}; give every layer (N, D) with one D")
    first = next(iter(tensors.values()))
    settings = {"model": model, "family": "", "num_layers": num_layers, "hidden_size": int(first.shape[1]),
                "layers": list(tensors), "selector": selector, "rows_per_sample": 1, "teacher_forcing": False,
                "generation": None, "dtype": str(first.dtype).replace("torch.", "")}
    rows = [dict(s, present=bool(s.get("present", True)), rows=1) for s in samples]
    store = InMemoryStore(tensors, torch.arange(n), rows, settings)
    store.verify()
    return store


class InMemoryStore:
    """Features per layer (R, D), the sample index of each row (R,), and N sample dicts.

    ``settings`` are the manifest fields of an extraction (model, layers, selector, ...; see
    ``xlvlm.extract.run.store_settings``). ``path`` is the text "<in memory>" (what messages
    and result files show in place of a folder).
    """

    path = IN_MEMORY

    def __init__(self, features: dict[str, torch.Tensor], row_sample: torch.Tensor, samples: list[dict],
                 settings: dict, skipped: list[dict] | None = None):
        keys = list(settings["layers"])
        if list(features) != keys:
            raise XlvlmError(f"features hold layers {list(features)}, the settings say {keys}")
        n_rows = int(row_sample.shape[0])
        for key, rows in features.items():
            if rows.dim() != 2 or rows.shape != (n_rows, settings["hidden_size"]):
                raise XlvlmError(f"features for layer {key} have shape {tuple(rows.shape)}; expected "
                                 f"({n_rows}, {settings['hidden_size']})")
        self._features = dict(features)
        self._row_sample = row_sample.to(torch.int64)
        self._samples = list(samples)
        self.manifest = {**settings, "status": "complete", "n_samples": len(samples), "skipped": list(skipped or []),
                         "shards": [{"n_samples": len(samples), "n_rows": n_rows}]}

    # ---- metadata (as FeatureStore) ------------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        return list(self.manifest["layers"])

    @property
    def model(self) -> str:
        return self.manifest.get("model", "")

    @property
    def selector(self) -> str:
        return self.manifest.get("selector", "")

    complete = True

    @property
    def hidden_size(self) -> int:
        return int(self.manifest["hidden_size"])

    @property
    def samples(self) -> list[dict]:
        return self._samples

    @property
    def ids(self) -> list[str]:
        return [s["id"] for s in self._samples]

    @property
    def present(self) -> torch.Tensor:
        """(N,) bool: samples whose selector found a token."""
        return torch.tensor([bool(s.get("present", True)) for s in self._samples], dtype=torch.bool)

    def __len__(self) -> int:
        return len(self._samples)

    @property
    def n_rows(self) -> int:
        return int(self._row_sample.shape[0])

    @property
    def row_sample(self) -> torch.Tensor:
        """(R,) int64: the sample index of each row."""
        return self._row_sample

    def layer_key(self, layer) -> str:
        """Map a layer as the user writes it (3, "3", -1, "final") to its key."""
        key = find_layer(layer, self.layers, self.manifest.get("num_layers"))
        if key is None:
            raise XlvlmError(f"layer {layer_key(layer)!r} is not in this in-memory store (it holds layers "
                             f"{', '.join(self.layers)}); extract it with layers=[..., {layer_key(layer)!r}]")
        return key

    # ---- tensors -------------------------------------------------------------------------------
    def features(self, layer, present_only: bool = False) -> torch.Tensor:
        """(R, D) features of a layer; present_only drops the rows of samples without a match."""
        features = self._features[self.layer_key(layer)]
        return features[self.present[self._row_sample]] if present_only else features

    def iter_rows(self, layer, batch_rows: int = 4096, present_only: bool = False,
                  shard_order: list[int] | None = None) -> Iterator[torch.Tensor]:
        """``features(layer, present_only)`` in (<= batch_rows, D) pieces. The store is one
        shard, so ``shard_order`` can only name shard 0 (or nothing)."""
        if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
            raise XlvlmError(f"batch_rows must be a positive integer, not {batch_rows!r}")
        if shard_order is not None and any(i != 0 for i in shard_order):
            raise XlvlmError(f"an in-memory store has one shard (0), not {list(shard_order)}")
        rows = self.features(layer, present_only)
        for _ in range(1 if shard_order is None else len(shard_order)):
            for start in range(0, rows.shape[0], batch_rows):
                yield rows[start:start + batch_rows]

    def verify(self) -> None:
        """Unique ids and finite rows for every present sample, as a folder's reader checks."""
        seen = set()
        for sample in self._samples:
            if sample["id"] in seen:
                raise XlvlmError(f"sample id {str(sample['id'])[:80]!r} appears twice; ids must be unique")
            seen.add(sample["id"])
        keep = self.present[self._row_sample]
        for key, rows in self._features.items():
            bad = (keep & ~torch.isfinite(rows).all(dim=1)).nonzero()
            if len(bad):
                row = int(bad[0, 0])
                sample = self._samples[int(self._row_sample[row])]
                raise XlvlmError(f"features for layer {key}: row {row} (sample {str(sample['id'])[:80]!r}) holds NaN "
                                 f"or inf; fix it or mark the sample present=False")

    def save(self, folder):
        """Write this store to an empty ``folder`` in the checksummed store format and return
        it as a :class:`FeatureStore`. PIL images are recorded by their label (see module)."""
        from xlvlm.extract.store import MANIFEST, FeatureStore, StoreWriter

        if (Path(folder) / MANIFEST).exists():
            raise XlvlmError(f"{folder}: already holds a feature store; save to a new folder")
        settings = {k: v for k, v in self.manifest.items() if k not in ("status", "n_samples", "skipped", "shards")}
        records = [json_ready(s) for s in self._samples]
        for record in records:
            try:
                json.dumps(record)
            except (TypeError, ValueError) as exc:
                raise XlvlmError(f"sample {str(record['id'])[:80]!r}: metadata cannot be written as JSON ({exc}); "
                                 f"keep sample fields to strings, numbers, lists and dicts") from None
        writer = StoreWriter(folder, settings, [r["id"] for r in records])
        writer.write_shard(self._features, self._row_sample, records, [json_ready(s) for s in self.manifest["skipped"]])
        writer.finish()
        return FeatureStore(folder)

    def __repr__(self) -> str:
        return f"InMemoryStore(samples={len(self)}, layers={self.layers}, selector={self.selector!r})"
