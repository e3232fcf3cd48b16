"""A feature store's manifest (``manifest.json``) as dataclasses, checked when read.

``Manifest.from_dict`` checks the type and range of every field a reader relies on and fails
with a one-line :class:`XlvlmError` naming the manifest and the field; ``to_dict`` gives the
JSON written to disk. Fields this version does not know (a distributed run's ``world_size``,
``ranks`` and ``batch_size``, or ``first_sample`` of older stores) are kept in ``extra`` as
written and written back unchanged; they identify nothing and no reader relies on them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from xlvlm.errors import XlvlmError
from xlvlm.runs import MANIFEST

SCHEMA_VERSION = 1
FORMAT = "xlvlm-feature-store"
STATUSES = ("partial", "complete")


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_file(path: Path) -> bool:
    """Path.is_file that says False, not raises, for names the OS refuses (too long, ...)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


class _Bad:
    """Raises the one-line error of a damaged manifest."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, what: str):
        raise XlvlmError(f"{self.path}: {what}; the store is damaged, re-extract it")


@dataclass
class ShardEntry:
    """One shard: its tensor file and sample-metadata file (relative to the store), their sizes
    and SHA-256, and ``sample_offset`` (added to its ``row_sample``; non-zero in a store merged
    from several processes)."""

    file: str
    samples_file: str
    n_samples: int
    n_rows: int
    bytes: int
    sha256: str
    samples_sha256: str
    sample_offset: int = 0
    dtype: str | None = None  # the layers' dtype when they share one
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, i: int, bad: _Bad, rows_per_sample) -> "ShardEntry":
        if not isinstance(data, dict):
            bad(f"shards[{i}] is not an object")
        for name in ("file", "samples_file", "n_samples", "n_rows", "bytes", "sha256", "samples_sha256"):
            value, counted = data.get(name), name in ("n_samples", "n_rows", "bytes")
            if not (_is_count(value) if counted else isinstance(value, str)):
                bad(f"shards[{i}] field {name!r} is missing or not a {'count' if counted else 'string'}")
        if not _is_count(data.get("sample_offset", 0)):
            bad(f"shards[{i}] field 'sample_offset' is not a count")
        if not isinstance(data.get("dtype", ""), str):
            bad(f"shards[{i}] field 'dtype' is not a string")
        if rows_per_sample == 1 and data["n_rows"] != data["n_samples"]:
            bad(f"shards[{i}] has {data['n_rows']} rows for {data['n_samples']} samples (one row per sample)")
        for name in ("file", "samples_file"):
            value = data[name]
            if not value or "\x00" in value or "\\" in value or Path(value).is_absolute() or ".." in Path(value).parts:
                bad(f"shards[{i}] field {name!r} ({value[:80]!r}) is not a file name inside the store")
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   extra={k: v for k, v in data.items() if k not in known and k != "first_sample"})

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "extra"}
        if data["dtype"] is None:
            del data["dtype"]
        if not data["sample_offset"]:
            del data["sample_offset"]
        return {**data, **self.extra}


@dataclass
class StoreSettings:
    """What identifies an extraction: resuming a store, or merging the stores of several
    processes, requires every field to match."""

    model: str
    family: str
    num_layers: int | None
    hidden_size: int
    layers: list[str]
    selector: str
    rows_per_sample: int | None
    teacher_forcing: bool
    generation: dict | None
    dtype: str | None
    prompt_format: str | None = None

    @classmethod
    def from_dict(cls, data: dict, bad: _Bad) -> "StoreSettings":
        layers = data["layers"]
        if not isinstance(layers, list) or not all(isinstance(k, str) and k for k in layers):
            bad("field 'layers' is not a list of layer names")
        if not _is_count(data["hidden_size"]) or data["hidden_size"] == 0:
            bad("field 'hidden_size' is not a positive integer")
        num_layers = data.get("num_layers")
        if num_layers is not None and (not _is_count(num_layers) or num_layers == 0):
            bad("field 'num_layers' is not a positive integer")
        for key in ("model", "selector", "family", "dtype"):
            if data.get(key) is not None and not isinstance(data[key], str):
                bad(f"field {key!r} is not a string")
        return cls(**{f.name: data.get(f.name, "" if f.name in ("model", "family", "selector") else None)
                      for f in fields(cls)} | {"teacher_forcing": bool(data.get("teacher_forcing", False))})

    def difference(self, other: "StoreSettings") -> str | None:
        """The first field whose value differs from ``other``'s, or None."""
        return next((f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)), None)


@dataclass
class Manifest:
    """A store's manifest: its settings, status, shards and the resume keys of its input."""

    settings: StoreSettings
    status: str = "partial"
    n_samples: int | None = None  # samples of the whole input (counting those skipped)
    ids_sha256: str | None = None  # resume key: the input's ids (extract.store.ids_digest)
    input_sha256: str | None = None  # resume key: the input's content (extract.run.input_digest)
    shards: list[ShardEntry] = field(default_factory=list)
    skipped: list = field(default_factory=list)  # samples skipped for bad images, with the reason
    n_skipped_in_shards: int = 0
    created: str | None = None
    finished: str | None = None
    extra: dict = field(default_factory=dict)

    _TOP = ("status", "n_samples", "ids_sha256", "input_sha256", "skipped", "n_skipped_in_shards", "created",
            "finished")

    @property
    def complete(self) -> bool:
        """Every sample of the input is stored or skipped (``status: complete``)."""
        return self.status == "complete"

    @property
    def n_stored(self) -> int:
        """Samples the shards hold."""
        return sum(shard.n_samples for shard in self.shards)

    @property
    def n_done(self) -> int:
        """Samples of the input already processed (stored or skipped): where a resume continues."""
        return self.n_stored + self.n_skipped_in_shards

    @classmethod
    def read(cls, folder: Path) -> "Manifest":
        path = folder / MANIFEST
        if not is_file(path):
            raise XlvlmError(f"{folder}: not a feature store (no {MANIFEST}); run `xlvlm extract --out {folder}` first")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer too long to convert
            raise XlvlmError(f"{path}: corrupt manifest ({exc}); re-run the extraction into a new folder")
        except RecursionError:
            raise XlvlmError(f"{path}: corrupt manifest (nested too deeply); re-run the extraction into a new folder")
        except OSError as exc:
            raise XlvlmError(f"{path}: cannot read the manifest ({exc.strerror or exc})")
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data, path: Path) -> "Manifest":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise XlvlmError(f"{path}: not an xlvlm feature-store manifest (field 'format' != {FORMAT!r})")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise XlvlmError(f"{path}: schema_version {data.get('schema_version')} is not supported "
                             f"(this xlvlm reads {SCHEMA_VERSION}); re-extract or upgrade xlvlm")
        for key in ("layers", "shards", "status", "hidden_size"):
            if key not in data:
                raise XlvlmError(f"{path}: manifest lacks field {key!r}; the store is damaged, re-extract it")
        bad = _Bad(path)
        settings = StoreSettings.from_dict(data, bad)
        if data["status"] not in STATUSES:
            bad(f"field 'status' is {data['status']!r}, not 'partial' or 'complete'")
        if not isinstance(data.get("skipped", []), list):
            bad("field 'skipped' is not a list")
        if not _is_count(data.get("n_skipped_in_shards", 0)):
            bad("field 'n_skipped_in_shards' is not a count")
        if not isinstance(data["shards"], list):
            bad("field 'shards' is not a list")
        shards = [ShardEntry.from_dict(shard, i, bad, settings.rows_per_sample) for i, shard in enumerate(data["shards"])]
        n_samples = data.get("n_samples")
        known = {f.name for f in fields(StoreSettings)} | set(cls._TOP) | {"format", "schema_version", "shards"}
        return cls(settings=settings, status=data["status"], n_samples=n_samples if _is_count(n_samples) else None,
                   ids_sha256=data.get("ids_sha256"), input_sha256=data.get("input_sha256"), shards=shards,
                   skipped=list(data.get("skipped", [])), n_skipped_in_shards=data.get("n_skipped_in_shards", 0),
                   created=data.get("created"), finished=data.get("finished"),
                   extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict:
        data = {"format": FORMAT, "schema_version": SCHEMA_VERSION, **asdict(self.settings)}
        data.update({key: getattr(self, key) for key in self._TOP})
        if data["finished"] is None:
            del data["finished"]
        data["shards"] = [shard.to_dict() for shard in self.shards]
        return {**data, **self.extra}
