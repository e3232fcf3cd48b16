"""FeatureStore: recorded hidden states on disk, readable by every later stage.

Layout of a store folder::

    manifest.json              settings, status, shard list (with sha256), skipped samples
                               (read and written as xlvlm.features.manifest.Manifest)
    shard-00000.safetensors    "layer/<key>" (R_s, D) for each layer, "row_sample" (R_s,) int64
    shard-00000.jsonl          metadata of the shard's samples, one JSON object per line

Shards hold consecutive samples in input order. A shard and its metadata are written (each
atomically) before the manifest names them, so an interrupted run leaves a store whose
manifest lists only complete shards: resuming continues after the last listed sample. Files
not named by the manifest are leftovers of an interrupted write and are overwritten.

A store made by several processes (``xlvlm extract`` under ``torchrun``, see
``xlvlm.features.distributed``) keeps each rank's shards in ``rank-RRRRR-of-WWWWW/`` sub-folders;
its top-level manifest names them by relative path and gives each shard a ``sample_offset``
(added to the shard's ``row_sample``, which counts from the rank's first sample).

Every reader checks what it reads against the manifest and fails with a one-line
:class:`XlvlmError` naming the file: each file's SHA-256 (once, the first time it is read;
``verify_checksums=False`` skips this for stores too large to read twice), sizes, shapes,
dtypes, row indices, unique sample ids, and finite rows for every present sample (a sample
without a match has a row of NaN, see below). A partial store (an interrupted extraction) is
refused unless ``allow_partial=True`` (``--allow-partial`` on the command line).
``verify()`` checks the whole store at once.

Rows: a single-row selector (``last-prompt``, ``token:WORD``, ...) gives exactly one row per
sample, in sample order; a sample without a match gets a row of NaN and ``present: false``.
Multi-row selectors (``all``, ``range:A:B``) give a variable number of rows per sample;
``row_sample`` maps each row to its sample index.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import torch
from safetensors import safe_open

from xlvlm.data.images import image_label
from xlvlm.errors import XlvlmError, argument, setting
from xlvlm.features.manifest import MANIFEST, Manifest, ShardEntry, StoreSettings, is_file
from xlvlm.layerkeys import find_layer, layer_key
from xlvlm.io import atomic_save_tensors, atomic_write_json, atomic_write_text, sha256_file


def ids_digest(sample_ids: list[str]) -> str:
    """The SHA-256 a manifest keeps of the ids of all samples to extract, in order (JSON
    encoded, so that no two lists of ids share a digest: ["a", "b"] is not ["a\\nb"])."""
    return hashlib.sha256(json.dumps(list(sample_ids), ensure_ascii=False).encode()).hexdigest()


def records_digest(records) -> str:
    """SHA-256 of a sequence of JSON values, each length-prefixed: the resume key of a store's
    input (see ``xlvlm.features.run.input_digest``). Values that JSON cannot encode go in as
    their ``str``."""
    digest = hashlib.sha256()
    for record in records:
        data = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str).encode()
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


# Leftovers of an interrupted atomic write (xlvlm.io writes ".NAME.XXXX.tmp" then renames).
_LEFTOVER = re.compile(r"^\.(manifest\.json|shard-\d+\.(safetensors|jsonl))\..+\.tmp$")


def partial_message(path: Path, manifest: Manifest) -> str:
    """Why a partial store is refused: how far it got, and the two ways on."""
    done, total = manifest.n_done, "?" if manifest.n_samples is None else manifest.n_samples
    return (f"{path}: partial store ({done} of {total} samples extracted, an interrupted run); rerun the same "
            f"`xlvlm extract` command to finish it, or pass --allow-partial (Python: allow_partial=True) to use "
            f"the samples it holds")


class _StoreMetadata:
    """What a store says about itself, read from its ``manifest`` (a :class:`Manifest`) and its
    ``samples``: one implementation for FeatureStore (a folder) and InMemoryStore."""

    manifest: Manifest
    samples: list[dict]

    @property
    def settings(self) -> StoreSettings:
        return self.manifest.settings

    @property
    def layers(self) -> list[str]:
        return list(self.settings.layers)

    @property
    def model(self) -> str:
        return self.settings.model

    @property
    def selector(self) -> str:
        return self.settings.selector

    @property
    def complete(self) -> bool:
        return self.manifest.complete

    @property
    def hidden_size(self) -> int:
        return int(self.settings.hidden_size)

    @property
    def ids(self) -> list[str]:
        return [s["id"] for s in self.samples]

    @property
    def present(self) -> torch.Tensor:
        """(N,) bool: samples whose selector found a token."""
        return torch.tensor([bool(s.get("present", True)) for s in self.samples], dtype=torch.bool)

    def __len__(self) -> int:
        return sum(shard.n_samples for shard in self.manifest.shards)

    @property
    def n_rows(self) -> int:
        """Rows per layer in the whole store (R)."""
        return sum(shard.n_rows for shard in self.manifest.shards)

    def layer_key(self, layer) -> str:
        """Map a layer as the user writes it (3, "3", -1, "final") to its stored key."""
        key = find_layer(layer, self.layers, self.settings.num_layers)
        if key is None:
            raise XlvlmError(self._missing_layer(layer_key(layer)))
        return key

    def _missing_layer(self, key: str) -> str:
        """The error for a layer this store lacks (its key as extraction would write it)."""
        raise NotImplementedError


class FeatureStore(_StoreMetadata):
    """Read a feature store folder.

    ``features(layer)`` -> (R, D) tensor (R = number of samples for single-row selectors);
    ``samples`` -> list of per-sample metadata dicts; ``present`` -> (N,) bool;
    ``iter_rows(layer, batch_rows)`` -> the same rows in (<= batch_rows, D) pieces, one shard
    open at a time (for stores larger than memory).

    Reads check each file's SHA-256 against the manifest the first time it is read (one
    extra pass over it; ``verify_checksums=False`` skips only this), and always its size,
    shapes, dtype, row indices, unique ids and that every present sample's rows are finite.
    A partial store (``status: partial``) raises unless ``allow_partial=True``.
    """

    def __init__(self, path, verify_checksums: bool = True, allow_partial: bool = False):
        self.path = Path(path)
        self.manifest = Manifest.read(self.path)
        if not self.manifest.complete and not allow_partial:
            raise XlvlmError(partial_message(self.path, self.manifest))
        self.verify_checksums = verify_checksums
        self._samples: list[dict] | None = None
        self._cache: dict[str, torch.Tensor] = {}
        self._verified: set[str] = set()

    # ---- metadata (the rest: _StoreMetadata) -------------------------------------------------
    @property
    def samples(self) -> list[dict]:
        if self._samples is None:
            samples, seen = [], {}
            for shard in self.manifest.shards:
                path = self.path / shard.samples_file
                for line_no, sample in enumerate(self._shard_samples(shard), start=1):
                    if sample["id"] in seen:
                        raise XlvlmError(f"{path}:{line_no}: sample id {sample['id'][:80]!r} appears twice (first at "
                                         f"{seen[sample['id']]}); the store is damaged, re-extract it")
                    seen[sample["id"]] = f"{path.name}:{line_no}"
                    samples.append(sample)
            self._samples = samples
        return self._samples

    def _shard_samples(self, shard: ShardEntry) -> list[dict]:
        """The metadata of one shard's samples, checked against the manifest."""
        path = self.path / shard.samples_file
        if not is_file(path):
            raise XlvlmError(f"{path}: shard metadata missing; the store is damaged, re-extract it")
        self._check_checksum(path, shard.samples_sha256)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (UnicodeDecodeError, OSError) as exc:
            raise XlvlmError(f"{path}: unreadable shard metadata ({type(exc).__name__}); re-extract it")
        if len(lines) != shard.n_samples:
            raise XlvlmError(f"{path}: {len(lines)} samples where the manifest says {shard.n_samples}; "
                             f"the shard is truncated, re-extract it")
        samples = []
        for line_no, line in enumerate(lines, start=1):
            try:
                sample = json.loads(line)
            except (ValueError, RecursionError):
                sample = None
            if not isinstance(sample, dict) or not isinstance(sample.get("id"), str):
                raise XlvlmError(f"{path}:{line_no}: not a sample record (a JSON object with a string 'id'); "
                                 f"the shard is damaged, re-extract it")
            if not isinstance(sample.get("present", True), bool):
                raise XlvlmError(f"{path}:{line_no}: field 'present' is not true or false; the shard is damaged, "
                                 f"re-extract it")
            samples.append(sample)
        return samples

    def _missing_layer(self, key: str) -> str:
        return (f"layer {key!r} is not in store {self.path} (it holds layers {', '.join(self.layers)}); "
                f"extract it with --layers {key}")

    # ---- tensors -------------------------------------------------------------------------------
    def _check_checksum(self, path: Path, digest: str) -> None:
        if self.verify_checksums and str(path) not in self._verified:
            if sha256_file(path) != digest:
                raise XlvlmError(f"{path}: checksum mismatch with the manifest; the shard is damaged, re-extract it")
            self._verified.add(str(path))

    def _shard_file(self, shard: ShardEntry) -> Path:
        """The shard's tensor file, checked to exist with the manifest's size (and checksum)."""
        path = self.path / shard.file
        if not is_file(path):
            raise XlvlmError(f"{path}: shard missing; the store is damaged, re-extract it")
        size = path.stat().st_size
        if size != shard.bytes:
            raise XlvlmError(f"{path}: size {size} != {shard.bytes} bytes in the manifest; "
                             f"the shard is truncated or altered, re-extract it")
        self._check_checksum(path, shard.sha256)
        return path

    def _first_samples(self) -> list[int]:
        """Index of each shard's first sample in the whole store."""
        firsts, total = [], 0
        for shard in self.manifest.shards:
            firsts.append(total)
            total += shard.n_samples
        return firsts

    def _check_part(self, path: Path, name: str, part: torch.Tensor, shard: ShardEntry, first: int) -> torch.Tensor:
        """One shard's tensor checked against the manifest; row indices made store-global."""
        n_rows = shard.n_rows
        if name == "row_sample":
            if part.dim() != 1 or part.shape[0] != n_rows or part.dtype != torch.int64:
                raise XlvlmError(f"{path}: row_sample has shape {tuple(part.shape)} ({part.dtype}), the manifest "
                                 f"says ({n_rows},) int64; the shard is damaged, re-extract it")
            part = part + shard.sample_offset
            if n_rows and (int(part.min()) < first or int(part.max()) >= first + shard.n_samples):
                raise XlvlmError(f"{path}: row_sample points outside the shard's samples; the store is damaged, "
                                 f"re-extract it")
            return part
        if part.dim() != 2 or tuple(part.shape) != (n_rows, self.hidden_size):
            raise XlvlmError(f"{path}: {name} has shape {tuple(part.shape)}, the manifest says "
                             f"({n_rows}, {self.hidden_size}); the shard is damaged, re-extract it")
        self._check_dtype(path, name, part.dtype, shard)
        return part

    @staticmethod
    def _check_dtype(path: Path, name: str, dtype: torch.dtype, shard: ShardEntry) -> None:
        expected = shard.dtype
        if expected and str(dtype).replace("torch.", "") != expected:
            raise XlvlmError(f"{path}: {name} is {str(dtype).replace('torch.', '')}, the manifest says {expected}; "
                             f"the shard was rewritten, re-extract it")
        if not dtype.is_floating_point:
            raise XlvlmError(f"{path}: {name} holds {dtype}, not floating-point features; the shard is damaged, "
                             f"re-extract it")

    @staticmethod
    def _check_finite(path: Path, name: str, rows: torch.Tensor, present_rows: torch.Tensor, first_row: int) -> None:
        """Rows of present samples must be finite (absent samples' rows are NaN by design)."""
        # A row with NaN/inf sums to NaN/inf; a row sum is ~20x cheaper than isfinite on every
        # value. Rows whose sum is not finite (or overflowed) get the exact check.
        suspect = present_rows & ~torch.isfinite(rows.sum(dim=1, dtype=torch.float32))
        if not bool(suspect.any()):
            return
        bad = suspect.clone()
        bad[suspect] = ~torch.isfinite(rows[suspect]).all(dim=1)
        if bool(bad.any()):
            row = first_row + int(bad.nonzero()[0, 0])
            raise XlvlmError(f"{path}: {name} row {row} (a present sample) holds NaN or inf; the shard is damaged or "
                             f"the model overflowed: re-extract it (with --dtype float32 if it was float16)")

    def _read(self, name: str) -> torch.Tensor:
        parts = []
        present_rows = self.present[self.row_sample] if name != "row_sample" else None
        row = 0
        for shard, first in zip(self.manifest.shards, self._first_samples()):
            path = self._shard_file(shard)
            try:
                with safe_open(path, framework="pt") as handle:
                    part = handle.get_tensor(name)
            except Exception as exc:  # safetensors raises its own error types
                raise XlvlmError(f"{path}: unreadable shard ({type(exc).__name__}: {exc}); re-extract it")
            part = self._check_part(path, name, part, shard, first)
            if present_rows is not None:
                self._check_finite(path, name, part, present_rows[row:row + shard.n_rows], 0)
            row += shard.n_rows
            parts.append(part)
        if not parts:
            return torch.empty(0, self.hidden_size) if name != "row_sample" else torch.empty(0, dtype=torch.long)
        if name != "row_sample" and len({part.dtype for part in parts}) > 1:
            raise XlvlmError(f"{self.path}: shards hold {name} in different dtypes; the store is damaged, "
                             f"re-extract it")
        return torch.cat(parts)

    def iter_rows(self, layer, batch_rows: int = 4096, present_only: bool = False,
                  shard_order: list[int] | None = None) -> Iterator[torch.Tensor]:
        """The rows of ``features(layer, present_only)`` as (<= batch_rows, D) tensors.

        Reads one shard at a time through safetensors slices, so memory holds one batch (and
        the pages of one open shard), whatever the store's size. Batches span shard boundaries;
        only the last is smaller. ``shard_order``: the shards to read, in this order (default
        all, in store order), e.g. a permutation for minibatch methods.
        """
        if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
            raise XlvlmError(f"batch_rows must be a positive integer, not {batch_rows!r}")
        key = self.layer_key(layer)
        order = range(len(self.manifest.shards)) if shard_order is None else shard_order
        batch, filled = None, 0
        for index in order:
            for piece in self._shard_pieces(index, f"layer/{key}", batch_rows, present_only):
                done = 0
                while done < piece.shape[0]:  # copy into a fresh batch: no list of pieces, no concatenation
                    if batch is None:
                        batch, filled = torch.empty(batch_rows, piece.shape[1], dtype=piece.dtype), 0
                    take = min(batch_rows - filled, piece.shape[0] - done)
                    batch[filled:filled + take] = piece[done:done + take]
                    filled, done = filled + take, done + take
                    if filled == batch_rows:
                        full, batch = batch, None
                        yield full
        if batch is not None and filled:
            yield batch[:filled]

    def _shard_pieces(self, index: int, name: str, batch_rows: int, present_only: bool) -> Iterator[torch.Tensor]:
        shard = self.manifest.shards[index]
        first = self._first_samples()[index]
        path = self._shard_file(shard)
        try:
            with safe_open(path, framework="pt") as handle:
                row_sample = self._check_part(path, "row_sample", handle.get_tensor("row_sample"), shard, first)
                present = torch.tensor([bool(s.get("present", True)) for s in self._shard_samples(shard)],
                                       dtype=torch.bool)
                keep = present[row_sample - first] if shard.n_rows else torch.zeros(0, dtype=torch.bool)
                rows = handle.get_slice(name)
                shape = tuple(rows.get_shape())
                if shape != (shard.n_rows, self.hidden_size):
                    raise XlvlmError(f"{path}: {name} has shape {shape}, the manifest says "
                                     f"({shard.n_rows}, {self.hidden_size}); the shard is damaged, re-extract it")
                for start in range(0, shard.n_rows, batch_rows):
                    piece = rows[start:start + batch_rows]
                    if start == 0:
                        self._check_dtype(path, name, piece.dtype, shard)
                    self._check_finite(path, name, piece, keep[start:start + batch_rows], start)
                    yield piece[keep[start:start + batch_rows]] if present_only else piece
        except XlvlmError:
            raise
        except Exception as exc:  # safetensors raises its own error types
            raise XlvlmError(f"{path}: unreadable shard ({type(exc).__name__}: {exc}); re-extract it")

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

    @staticmethod
    def from_tensors(features, samples, path=None, model: str = "", selector: str = "custom",
                     num_layers: int | None = None):
        """A store of your own features: ``features`` {layer: (N, D)} (layer keys as anywhere:
        3 or "3", "final") and N sample dicts (``id`` at least; ``present`` defaults to True).
        Lets any stage run on representations made elsewhere.

        Returns an :class:`InMemoryStore`; with ``path``, writes the store
        folder there and returns it as a FeatureStore (the same as ``.save(path)``).
        """
        if isinstance(features, (str, os.PathLike)):
            raise XlvlmError(f"from_tensors: features is the path {str(features)!r}; call "
                             f"from_tensors(features, samples, path=...) to write a store folder")
        store = store_from_tensors(features, samples, model=model, selector=selector, num_layers=num_layers)
        return store if path is None else store.save(path)

    def verify(self) -> None:
        """Check the whole store: every file present with the manifest's size and SHA-256, every
        sample record, unique ids, every layer's shapes, dtype and finite rows (one shard in
        memory at a time). Raises a one-line XlvlmError naming the first bad file."""
        for shard in self.manifest.shards:
            for name, digest in ((shard.file, shard.sha256), (shard.samples_file, shard.samples_sha256)):
                path = self.path / name
                if not is_file(path):
                    raise XlvlmError(f"{path}: shard missing; the store is damaged, re-extract it")
                if name == shard.file and path.stat().st_size != shard.bytes:
                    raise XlvlmError(f"{path}: size {path.stat().st_size} != {shard.bytes} bytes in the manifest; "
                                     f"the shard is truncated or altered, re-extract it")
                if sha256_file(path) != digest:
                    raise XlvlmError(f"{path}: checksum mismatch with the manifest; the shard is damaged, re-extract it")
                self._verified.add(str(path))
        self.samples  # records, unique ids
        for layer in self.layers:  # shapes, dtypes, row indices, finite rows; one shard in memory at a time
            for _ in self.iter_rows(layer):
                pass

    def __repr__(self) -> str:
        return (f"FeatureStore({str(self.path)!r}, samples={len(self)}, layers={self.layers}, "
                f"selector={self.selector!r}, status={self.manifest.status!r})")


def _another_or_overwrite() -> str:
    return f"choose another {argument('out')} or pass {setting('overwrite', True)} to replace it"


def remove_store(folder) -> None:
    """Delete the feature store (or unfinished distributed extraction) at ``folder``, manifest
    first so that nothing half-deleted looks complete; a folder holding anything else is refused,
    never deleted."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not (folder / MANIFEST).is_file() and not any(folder.glob("rank-*-of-*/" + MANIFEST)):
        if folder.is_dir() and not any(folder.iterdir()):
            return
        raise XlvlmError(f"{folder}: is not a feature store, and {setting('overwrite', True)} replaces only "
                         f"feature stores; choose another {argument('out')}")
    (folder / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(folder)


class StoreWriter:
    """Appends shards to a store folder; resumes a partial store with the same settings.

    ``settings`` must match the store's to resume (model, layers, selector, generation, prompt
    format, ...). ``sample_ids`` are the ids of all samples to extract, in
    order; ``input_sha256`` the digest of their whole content (``xlvlm.features.run.input_digest``:
    every field and the image bytes), which must match too.
    """

    def __init__(self, folder, settings: StoreSettings, sample_ids: list[str], input_sha256: str | None = None):
        self.folder = Path(folder)
        self.settings = settings
        self.ids_digest = ids_digest(sample_ids)
        self.input_sha256 = input_sha256
        self._committed = 0  # samples listed in the manifest on disk
        if (self.folder / MANIFEST).exists():
            self.manifest = self._resume()
            self._committed = self.manifest.n_stored
            self._remove_leftovers()
        else:
            if self.folder.exists() and not self.folder.is_dir():
                raise XlvlmError(f"{self.folder}: exists and is not a folder; choose another {argument('out')}")
            self._remove_leftovers()  # a run killed before its first manifest leaves only these
            if self.folder.exists() and any(self.folder.iterdir()):
                if any(self.folder.glob("rank-*-of-*/" + MANIFEST)):
                    raise XlvlmError(f"{self.folder}: holds an unfinished distributed extraction (rank-* folders); "
                                     f"rerun it under torchrun with the same number of processes")
                raise XlvlmError(f"{self.folder}: folder exists, is not empty and is not a feature store; "
                                 f"choose another {argument('out')}")
            self.manifest = Manifest(settings, status="partial", n_samples=len(sample_ids),
                                     ids_sha256=self.ids_digest, input_sha256=input_sha256,
                                     created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            self._write_manifest()

    def _resume(self) -> Manifest:
        manifest = Manifest.read(self.folder)
        key = self.settings.difference(manifest.settings)
        if key is not None:
            raise XlvlmError(f"{self.folder}: existing store was made with "
                             f"{key}={repr(getattr(manifest.settings, key))[:100]}, "
                             f"not {repr(getattr(self.settings, key))[:100]}; {_another_or_overwrite()}")
        if manifest.ids_sha256 != self.ids_digest:
            raise XlvlmError(f"{self.folder}: existing store was made from other samples; "
                             f"{_another_or_overwrite()}")
        if manifest.input_sha256 != self.input_sha256:
            raise XlvlmError(f"{self.folder}: existing store was made from other sample content (same ids, but a "
                             f"prompt, answer, image or other field differs); {_another_or_overwrite()}")
        return manifest

    def _remove_leftovers(self) -> None:
        """Delete temporary files of writes that a killed run never finished."""
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                if _LEFTOVER.match(path.name) and path.is_file():
                    path.unlink(missing_ok=True)

    def _write_manifest(self) -> None:
        try:
            atomic_write_json(self.folder / MANIFEST, self.manifest.to_dict())
        except OSError as exc:
            raise XlvlmError(f"{self.folder / MANIFEST}: cannot write ({exc.strerror or exc}); {self._safe()}") from exc
        self._committed = self.manifest.n_stored

    def _safe(self) -> str:
        return f"the {self._committed} samples written before are intact; fix that and rerun the same command to resume"

    def write_shard(self, layer_rows: dict[str, torch.Tensor], row_sample: torch.Tensor,
                    samples: list[dict], skipped: list[dict]) -> None:
        """Write one shard: rows per layer (R_s, D), their sample index (global), and metadata.

        ``skipped`` are samples of this stretch of input that were skipped (bad images); they
        are recorded in the manifest and count as done for resuming.
        """
        index = len(self.manifest.shards)
        stem = f"shard-{index:05d}"
        tensors = {f"layer/{key}": rows for key, rows in layer_rows.items()}
        tensors["row_sample"] = row_sample.to(torch.int64)
        dtypes = {str(rows.dtype).replace("torch.", "") for rows in layer_rows.values()}
        tensor_path, samples_path = self.folder / f"{stem}.safetensors", self.folder / f"{stem}.jsonl"
        try:
            atomic_save_tensors(tensor_path, tensors)
            atomic_write_text(samples_path, "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
        except OSError as exc:  # disk full, quota, permissions: the manifest still lists only whole shards
            raise XlvlmError(f"{tensor_path}: cannot write shard ({exc.strerror or exc}); {self._safe()}") from exc
        self.manifest.shards.append(ShardEntry(
            file=tensor_path.name, samples_file=samples_path.name, n_samples=len(samples),
            n_rows=int(row_sample.shape[0]), bytes=tensor_path.stat().st_size, sha256=sha256_file(tensor_path),
            samples_sha256=sha256_file(samples_path), dtype=dtypes.pop() if len(dtypes) == 1 else None))
        self.manifest.skipped.extend(skipped)
        self.manifest.n_skipped_in_shards += len(skipped)
        try:
            self._write_manifest()
        except XlvlmError:  # keep this writer's view equal to the manifest on disk
            self.manifest.shards.pop()
            del self.manifest.skipped[len(self.manifest.skipped) - len(skipped):]
            self.manifest.n_skipped_in_shards -= len(skipped)
            raise

    def finish(self) -> None:
        self.manifest.status = "complete"
        self.manifest.finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._write_manifest()


# ---- in memory --------------------------------------------------------------------------------
# InMemoryStore: features held in memory, with the reading interface of a FeatureStore.
# ``xlvlm.extract(..., out=None)`` and ``FeatureStore.from_tensors(features, samples)`` return one;
# every consumer of a store (concepts, shift, steering vectors, sweeps) takes it as it takes a
# folder. ``save(folder)`` writes it as a checksummed store folder and returns that FeatureStore.
# Samples may keep in-memory PIL images; a saved store records each as
# :func:`xlvlm.data.images.image_label` ("<PIL.Image 64x48 RGB sha256:...>"), not its pixels.
# (It lives in this module because from_tensors returns it and its save writes this format.)

IN_MEMORY = "<in memory>"


def json_ready(sample: dict) -> dict:
    """A sample's metadata as a store file keeps it: PIL images as their label."""
    image = sample.get("image")
    return sample if image is None or isinstance(image, str) else {**sample, "image": image_label(image)}


def sample_subset(store, indices: list[int], layers=None) -> "InMemoryStore":
    """An in-memory store of the samples at ``indices`` (in that order) of a one-row-per-sample
    ``store``: their ids and their rows at ``layers`` (default: every layer of the store)."""
    if store.settings.rows_per_sample != 1:
        raise XlvlmError(f"{store.path}: has several rows per sample; a subset of samples needs one row each")
    index = torch.tensor(list(indices), dtype=torch.long)
    features = {key: store.features(key)[index] for key in (layers or store.layers)}
    return store_from_tensors(features, [{"id": str(store.ids[i])} for i in indices], model=store.model,
                              selector=store.selector)


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
    settings = StoreSettings(model=model, family="", num_layers=num_layers, hidden_size=int(first.shape[1]),
                             layers=list(tensors), selector=selector, rows_per_sample=1, teacher_forcing=False,
                             generation=None, dtype=str(first.dtype).replace("torch.", ""))
    rows = [dict(s, present=bool(s.get("present", True)), rows=1) for s in samples]
    store = InMemoryStore(tensors, torch.arange(n), rows, settings)
    store.verify()
    return store


class InMemoryStore(_StoreMetadata):
    """Features per layer (R, D), the sample index of each row (R,), and N sample dicts.

    ``settings`` (:class:`StoreSettings`) identify the extraction (model, layers, selector, ...;
    see ``xlvlm.features.run.store_settings``). ``manifest`` is a complete :class:`Manifest`
    with these settings and no shard files (the same ``manifest``/``settings`` interface as a
    FeatureStore). ``path`` is the text "<in memory>" (what messages and result files show in
    place of a folder).
    """

    path = IN_MEMORY

    def __init__(self, features: dict[str, torch.Tensor], row_sample: torch.Tensor, samples: list[dict],
                 settings: StoreSettings, skipped: list[dict] | None = None):
        keys = list(settings.layers)
        if list(features) != keys:
            raise XlvlmError(f"features hold layers {list(features)}, the settings say {keys}")
        n_rows = int(row_sample.shape[0])
        for key, rows in features.items():
            if rows.dim() != 2 or rows.shape != (n_rows, settings.hidden_size):
                raise XlvlmError(f"features for layer {key} have shape {tuple(rows.shape)}; expected "
                                 f"({n_rows}, {settings.hidden_size})")
        self._features = dict(features)
        self._row_sample = row_sample.to(torch.int64)
        self._samples = list(samples)
        skipped = list(skipped or [])
        # One shard, held here rather than in files (so no file names or checksums to check).
        shard = ShardEntry(file=IN_MEMORY, samples_file=IN_MEMORY, n_samples=len(samples), n_rows=n_rows, bytes=0,
                           sha256="", samples_sha256="")
        self.manifest = Manifest(settings, status="complete", n_samples=len(samples) + len(skipped), shards=[shard],
                                 skipped=skipped, n_skipped_in_shards=len(skipped))

    # ---- metadata (the rest: _StoreMetadata) -------------------------------------------------
    @property
    def samples(self) -> list[dict]:
        return self._samples

    @property
    def row_sample(self) -> torch.Tensor:
        """(R,) int64: the sample index of each row."""
        return self._row_sample

    def _missing_layer(self, key: str) -> str:
        return (f"layer {key!r} is not in this in-memory store (it holds layers {', '.join(self.layers)}); "
                f"extract it with layers=[..., {key!r}]")

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

    def save(self, folder, overwrite: bool = False):
        """Write this store to an empty ``folder`` in the checksummed store format and return
        it as a :class:`FeatureStore`. PIL images are recorded by their label (see module). A
        folder holding a feature store is refused unless ``overwrite=True`` (which replaces it)."""
        if (Path(folder) / MANIFEST).exists():
            if not overwrite:
                raise XlvlmError(f"{folder}: already holds a feature store; save to a new folder or pass "
                                 f"{setting('overwrite', True)}")
            remove_store(folder)
        records = [json_ready(s) for s in self._samples]
        for record in records:
            try:
                json.dumps(record)
            except (TypeError, ValueError) as exc:
                raise XlvlmError(f"sample {str(record['id'])[:80]!r}: metadata cannot be written as JSON ({exc}); "
                                 f"keep sample fields to strings, numbers, lists and dicts") from None
        writer = StoreWriter(folder, self.settings, [r["id"] for r in records])
        writer.write_shard(self._features, self._row_sample, records, [json_ready(s) for s in self.manifest.skipped])
        writer.finish()
        return FeatureStore(folder)

    def __repr__(self) -> str:
        return f"InMemoryStore(samples={len(self)}, layers={self.layers}, selector={self.selector!r})"
