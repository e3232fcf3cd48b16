"""FeatureStore: recorded hidden states on disk, readable by every later stage.

Layout of a store folder::

    manifest.json              settings, status, shard list (with sha256), skipped samples
    shard-00000.safetensors    "layer/<key>" (R_s, D) for each layer, "row_sample" (R_s,) int64
    shard-00000.jsonl          metadata of the shard's samples, one JSON object per line

Shards hold consecutive samples in input order. A shard and its metadata are written (each
atomically) before the manifest names them, so an interrupted run leaves a store whose
manifest lists only complete shards: resuming continues after the last listed sample. Files
not named by the manifest are leftovers of an interrupted write and are overwritten.

Rows: a single-row selector (``last-prompt``, ``token:WORD``, ...) gives exactly one row per
sample, in sample order; a sample without a match gets a row of NaN and ``present: false``.
Multi-row selectors (``all``, ``range:A:B``) give a variable number of rows per sample;
``row_sample`` maps each row to its sample index.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors import safe_open

from xlvlm.errors import XlvlmError
from xlvlm.io import atomic_save_tensors, atomic_write_json, atomic_write_text

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
FORMAT = "xlvlm-feature-store"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise XlvlmError(f"{folder}: not a feature store (no {MANIFEST}); run `xlvlm extract --out {folder}` first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise XlvlmError(f"{path}: corrupt manifest ({exc}); re-run the extraction into a new folder")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise XlvlmError(f"{path}: not an xlvlm feature-store manifest (field 'format' != {FORMAT!r})")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise XlvlmError(f"{path}: schema_version {manifest.get('schema_version')} is not supported "
                         f"(this xlvlm reads {SCHEMA_VERSION}); re-extract or upgrade xlvlm")
    for key in ("layers", "shards", "status", "hidden_size"):
        if key not in manifest:
            raise XlvlmError(f"{path}: manifest lacks field {key!r}; the store is damaged, re-extract it")
    return manifest


class FeatureStore:
    """Read a feature store folder.

    ``features(layer)`` -> (R, D) tensor (R = number of samples for single-row selectors);
    ``samples`` -> list of per-sample metadata dicts; ``present`` -> (N,) bool.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self._samples: list[dict] | None = None
        self._cache: dict[str, torch.Tensor] = {}

    # ---- metadata ------------------------------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        return list(self.manifest["layers"])

    @property
    def model(self) -> str:
        return self.manifest.get("model", "")

    @property
    def selector(self) -> str:
        return self.manifest.get("selector", "")

    @property
    def complete(self) -> bool:
        return self.manifest["status"] == "complete"

    @property
    def hidden_size(self) -> int:
        return int(self.manifest["hidden_size"])

    @property
    def samples(self) -> list[dict]:
        if self._samples is None:
            samples = []
            for shard in self.manifest["shards"]:
                path = self.path / shard["samples_file"]
                if not path.is_file():
                    raise XlvlmError(f"{path}: shard metadata missing; the store is damaged, re-extract it")
                lines = path.read_text(encoding="utf-8").splitlines()
                if len(lines) != shard["n_samples"]:
                    raise XlvlmError(f"{path}: {len(lines)} samples where the manifest says {shard['n_samples']}; "
                                     f"the shard is truncated, re-extract it")
                samples.extend(json.loads(line) for line in lines)
            self._samples = samples
        return self._samples

    @property
    def ids(self) -> list[str]:
        return [s["id"] for s in self.samples]

    @property
    def present(self) -> torch.Tensor:
        return torch.tensor([bool(s.get("present", True)) for s in self.samples], dtype=torch.bool)

    def __len__(self) -> int:
        return sum(shard["n_samples"] for shard in self.manifest["shards"])

    def layer_key(self, layer) -> str:
        """Map a layer as the user writes it (3, -1, "final", "3") to its stored key."""
        text = str(layer).strip()
        if text in self.layers:
            return text
        try:
            index = int(text)
        except ValueError:
            index = None
        n = self.manifest.get("num_layers")
        if index is not None and n and -n <= index < 0 and str(index % n) in self.layers:
            return str(index % n)
        raise XlvlmError(f"layer {text!r} is not in store {self.path} (it holds layers {', '.join(self.layers)}); "
                         f"extract it with --layers {text}")

    # ---- tensors -------------------------------------------------------------------------------
    def _read(self, name: str) -> torch.Tensor:
        parts = []
        for shard in self.manifest["shards"]:
            path = self.path / shard["file"]
            if not path.is_file():
                raise XlvlmError(f"{path}: shard missing; the store is damaged, re-extract it")
            if path.stat().st_size != shard["bytes"]:
                raise XlvlmError(f"{path}: size {path.stat().st_size} != {shard['bytes']} bytes in the manifest; "
                                 f"the shard is truncated or altered, re-extract it")
            try:
                with safe_open(path, framework="pt") as handle:
                    parts.append(handle.get_tensor(name))
            except Exception as exc:  # safetensors raises its own error types
                raise XlvlmError(f"{path}: unreadable shard ({type(exc).__name__}: {exc}); re-extract it")
        if not parts:
            return torch.empty(0, self.hidden_size) if name != "row_sample" else torch.empty(0, dtype=torch.long)
        return torch.cat(parts)

    @property
    def row_sample(self) -> torch.Tensor:
        """(R,) int64: the sample index of each row."""
        if "row_sample" not in self._cache:
            self._cache["row_sample"] = self._read("row_sample")
        return self._cache["row_sample"]

    def features(self, layer, present_only: bool = False) -> torch.Tensor:
        """(R, D) features of a layer, in the dtype they were recorded in.

        present_only: drop the rows of samples without a match (their rows are NaN).
        """
        key = self.layer_key(layer)
        if key not in self._cache:
            self._cache[key] = self._read(f"layer/{key}")
        features = self._cache[key]
        if present_only:
            features = features[self.present[self.row_sample]]
        return features

    @classmethod
    def from_tensors(cls, path, features: dict, samples: list[dict], model: str = "", selector: str = "custom",
                     num_layers: int | None = None) -> "FeatureStore":
        """Write a store from your own features: {layer: (N, D)} and N sample dicts (``id`` at
        least; ``present`` defaults to True). Lets any stage run on representations made
        elsewhere."""
        keys = [str(k) for k in features]
        tensors = {str(k): torch.as_tensor(v) for k, v in features.items()}
        n = len(samples)
        for key, value in tensors.items():
            if value.dim() != 2 or value.shape[0] != n:
                raise XlvlmError(f"features for layer {key} have shape {tuple(value.shape)}; expected ({n}, D)")
        hidden = next(iter(tensors.values())).shape[1]
        settings = {"model": model, "family": "", "num_layers": num_layers, "hidden_size": int(hidden),
                    "layers": keys, "selector": selector, "rows_per_sample": 1, "teacher_forcing": False,
                    "generation": None, "dtype": str(next(iter(tensors.values())).dtype).replace("torch.", "")}
        rows = [dict(s, id=str(s["id"]), present=bool(s.get("present", True)), rows=1) for s in samples]
        writer = StoreWriter(path, settings, [r["id"] for r in rows])
        writer.write_shard(tensors, torch.arange(n), rows, [])
        writer.finish()
        return cls(path)

    def verify(self) -> None:
        """Check every shard against the sha256 in the manifest; raise on the first mismatch."""
        for shard in self.manifest["shards"]:
            for name, digest in ((shard["file"], shard["sha256"]), (shard["samples_file"], shard["samples_sha256"])):
                path = self.path / name
                if not path.is_file() or sha256_file(path) != digest:
                    raise XlvlmError(f"{path}: checksum mismatch with the manifest; the shard is damaged, re-extract it")

    def __repr__(self) -> str:
        return (f"FeatureStore({str(self.path)!r}, samples={len(self)}, layers={self.layers}, "
                f"selector={self.selector!r}, status={self.manifest['status']!r})")


class StoreWriter:
    """Appends shards to a store folder; resumes a partial store with the same settings.

    ``settings`` are the manifest fields that must match to resume (model, layers, selector,
    generation, ...). ``sample_ids`` are the ids of all samples to extract, in order.
    """

    def __init__(self, folder, settings: dict, sample_ids: list[str]):
        self.folder = Path(folder)
        self.settings = settings
        self.ids_digest = hashlib.sha256("\n".join(sample_ids).encode()).hexdigest()
        self.sample_ids = sample_ids
        if (self.folder / MANIFEST).exists():
            self.manifest = self._resume()
        else:
            if self.folder.exists() and any(self.folder.iterdir()):
                raise XlvlmError(f"{self.folder}: folder exists, is not empty and is not a feature store; "
                                 f"choose another --out")
            self.manifest = {
                "format": FORMAT, "schema_version": SCHEMA_VERSION, **settings,
                "n_samples": len(sample_ids), "ids_sha256": self.ids_digest, "status": "partial",
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "shards": [], "skipped": [],
            }
            self._write_manifest()

    def _resume(self) -> dict:
        manifest = read_manifest(self.folder)
        for key, value in self.settings.items():
            if key in ("created", "xlvlm_version", "batch_size", "device", "dtype_requested"):
                continue
            if manifest.get(key) != value:
                raise XlvlmError(f"{self.folder}: existing store was made with {key}={manifest.get(key)!r}, not "
                                 f"{value!r}; choose another --out or delete the folder")
        if manifest.get("ids_sha256") != self.ids_digest:
            raise XlvlmError(f"{self.folder}: existing store was made from other samples; "
                             f"choose another --out or delete the folder")
        return manifest

    @property
    def n_done(self) -> int:
        """Samples already written (listed in the manifest), counting skipped ones."""
        return sum(shard["n_samples"] for shard in self.manifest["shards"]) + self.manifest.get("n_skipped_in_shards", 0)

    @property
    def done(self) -> bool:
        return self.manifest["status"] == "complete"

    def _write_manifest(self) -> None:
        atomic_write_json(self.folder / MANIFEST, self.manifest)

    def write_shard(self, layer_rows: dict[str, torch.Tensor], row_sample: torch.Tensor,
                    samples: list[dict], skipped: list[dict]) -> None:
        """Write one shard: rows per layer (R_s, D), their sample index (global), and metadata.

        ``skipped`` are samples of this stretch of input that were skipped (bad images); they
        are recorded in the manifest and count as done for resuming.
        """
        index = len(self.manifest["shards"])
        stem = f"shard-{index:05d}"
        tensors = {f"layer/{key}": rows for key, rows in layer_rows.items()}
        tensors["row_sample"] = row_sample.to(torch.int64)
        tensor_path, samples_path = self.folder / f"{stem}.safetensors", self.folder / f"{stem}.jsonl"
        atomic_save_tensors(tensor_path, tensors)
        atomic_write_text(samples_path, "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
        self.manifest["shards"].append({
            "file": tensor_path.name, "samples_file": samples_path.name,
            "first_sample": sum(s["n_samples"] for s in self.manifest["shards"]),
            "n_samples": len(samples), "n_rows": int(row_sample.shape[0]),
            "bytes": tensor_path.stat().st_size,
            "sha256": sha256_file(tensor_path), "samples_sha256": sha256_file(samples_path),
        })
        self.manifest["skipped"].extend(skipped)
        self.manifest["n_skipped_in_shards"] = self.manifest.get("n_skipped_in_shards", 0) + len(skipped)
        self._write_manifest()

    def finish(self) -> None:
        self.manifest["status"] = "complete"
        self.manifest["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._write_manifest()
