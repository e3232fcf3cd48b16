"""Hugging Face ``datasets`` data: ``hf:SOURCE[:split]``.

SOURCE is a local parquet or arrow file, a glob of them, a folder written by ``save_to_disk``
(or a folder of data files), or a hub dataset name (read where the hub is reachable). Columns
become sample fields through a column map (:mod:`xlvlm.data.columns`: ``columns``, ``preset``).

Images stored in the data (``{"bytes", "path"}`` structs, ``Image`` features, raw bytes) become
:class:`~xlvlm.data.images.EncodedImage` s: each sample holds a label
(``hf:/data/pope.parquet:train row 12``), and the bytes are read from the dataset when the
image is opened, with every file's checks. A path column gives plain image paths.

Without ``streaming`` the split is opened as a ``datasets.Dataset`` (parquet and arrow files
are first converted into the ``datasets`` cache, then memory-mapped) and images are read by
row. With ``streaming`` nothing is copied: local parquet files are read a row group at a time
(:mod:`xlvlm.data.parquet`), other sources as a ``datasets.IterableDataset``; one pass reads
the sample fields (not the images), and images are read in row order as a run asks for them
(memory stays at a row group or a few batches of rows; a request behind the stream restarts it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import weakref
from collections import OrderedDict
from functools import partial
from pathlib import Path

from xlvlm.data.columns import column_map, row_sample
from xlvlm.data.images import EncodedImage
from xlvlm.data.parquet import ParquetTable, is_parquet
from xlvlm.errors import XlvlmError

_EXTENSIONS = {".parquet": "parquet", ".arrow": "arrow"}
_SPLIT = re.compile(r"[A-Za-z0-9_.\-]+")
# Streaming keeps the rows read last: with --skip-bad each batch is read twice (check, then
# encode), and going back further than this restarts the stream.
_KEEP_ROWS, _KEEP_BYTES = 1024, 64 * 2**20


def _datasets():
    try:
        import datasets
    except ImportError:
        raise XlvlmError("hf: data needs the `datasets` library; install it with pip install 'xlvlm[hub]'") from None
    return datasets


def split_spec(text: str) -> tuple[str, str | None]:
    """``SOURCE[:split]`` as ``(SOURCE, split or None)``; a SOURCE that exists as given keeps
    its colon."""
    source, sep, split = text.rpartition(":")
    if sep and source and _SPLIT.fullmatch(split) and not Path(text).expanduser().exists():
        return source, split
    return text, None


def _local_files(source: str) -> list[str] | None:
    """The data files of a local file or glob; None when SOURCE is no file."""
    if glob.has_magic(source):
        files = sorted(glob.glob(os.path.expanduser(source)))
        if not files:
            raise XlvlmError(f"hf:{source}: no file matches this pattern; check the path")
        return [str(Path(f).resolve()) for f in files]
    path = Path(source).expanduser()
    return [str(path.resolve())] if path.is_file() else None


def _files_name(source: str, files: list[str]) -> str:
    """How labels name local data files: the one file's absolute path, or the absolute glob."""
    return os.path.abspath(os.path.expanduser(source)) if glob.has_magic(source) else files[0]


@contextlib.contextmanager
def reading(what: str):
    """Errors of ``datasets`` and pyarrow (a corrupt file, a missing split, the hub) as one line."""
    try:
        yield
    except XlvlmError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise XlvlmError(f"{what}: cannot read it with `datasets` ({type(exc).__name__}: {first})") from None


def _pick_split(loaded, split: str | None, what: str):
    """``(dataset, split name)``: the split of a Dataset(Dict) or IterableDataset(Dict)."""
    if not hasattr(loaded, "keys"):
        return loaded, split
    names = list(loaded.keys())
    if split is None and len(names) == 1:
        return loaded[names[0]], names[0]
    if split is None or split not in names:
        problem = "has several splits" if split is None else f"has no split {split!r}"
        raise XlvlmError(f"{what}: {problem} (it has {', '.join(names)}); name one: {what}:{names[0]}")
    return loaded[split], split


def open_split(source: str, split: str | None, streaming: bool):
    """``(dataset, folder, name)``: the split as a Dataset (IterableDataset when streaming), the
    folder relative image paths are read from (None for the hub) and the source's name in labels."""
    datasets = _datasets()
    what = f"hf:{source}"
    files = _local_files(source)
    path = Path(source).expanduser()
    with reading(what), _quiet(datasets):
        if files is not None:
            kind = _EXTENSIONS.get(Path(files[0]).suffix.lower())
            if kind is None:
                raise XlvlmError(f"{what}: not a .parquet or .arrow file; give one, a glob of them or a dataset folder")
            options = _parquet_options() if kind == "parquet" else {}
            loaded = datasets.load_dataset(kind, data_files=files, streaming=streaming, **options)
            folder, name = Path(files[0]).parent, _files_name(source, files)
        elif path.is_dir():
            saved = (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()
            loaded = datasets.load_from_disk(str(path)) if saved else datasets.load_dataset(str(path), streaming=streaming)
            folder, name = path.resolve(), str(path.resolve())
        else:
            loaded, folder, name = _from_hub(datasets, source, split, streaming), None, source
        dataset, split = _pick_split(loaded, split, what)
        if streaming and isinstance(dataset, datasets.Dataset):  # a save_to_disk folder
            dataset = dataset.to_iterable_dataset()
    return dataset, folder, f"hf:{name}" + (f":{split}" if split else "")


def _from_hub(datasets, name: str, split: str | None, streaming: bool):
    """A hub dataset; a SOURCE that looks like a path (``/``, ``.``, ``~``, a data file's
    extension) is a missing file, not a hub name."""
    if name.startswith(("/", ".", "~")) or Path(name).suffix.lower() in _EXTENSIONS:
        raise XlvlmError(f"hf:{name}: file or folder not found; check the path")
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise XlvlmError(f"hf:{name}: no such local file or folder, and HF_HUB_OFFLINE is set so the hub is not "
                         f"asked; check the path, or unset HF_HUB_OFFLINE to download {name!r}")
    try:
        try:
            return datasets.load_dataset(name, split=split, streaming=streaming, **_parquet_options())
        except ValueError as exc:  # not parquet data: its builder takes no parquet options
            if "fragment_scan_options" not in str(exc):
                raise
            return datasets.load_dataset(name, split=split, streaming=streaming)
    except ConnectionError as exc:
        raise XlvlmError(f"hf:{name}: the hub cannot be reached ({str(exc).strip()[:200]}); check the network, or set "
                         f"HF_HUB_OFFLINE=1 and give a local parquet/arrow file or save_to_disk folder") from None


def _parquet_options() -> dict:
    """Parquet read one row group at a time: pyarrow's default pre-buffering keeps every row
    group read so far (the whole file's images, by the end of a pass)."""
    import pyarrow.dataset

    return {"fragment_scan_options": pyarrow.dataset.ParquetFragmentScanOptions(pre_buffer=False)}


@contextlib.contextmanager
def _quiet(datasets):
    """No ``datasets`` progress bars while opening (xlvlm's own bar follows the run)."""
    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def image_bytes(value, where: str, folder: Path | None) -> bytes:
    """The encoded bytes of an image cell: a ``{"bytes", "path"}`` struct, bytes, or a path."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str) and value:
        path = resolve_path(value, where, folder)
        if not path.is_file():
            raise XlvlmError(f"{where}: image {str(path)!r} not found; check the image root or leave the sample out "
                             f"(xlvlm extract --skip-bad skips such samples)")
        return path.read_bytes()
    raise XlvlmError(f"{where}: no image in this row ({type(value).__name__}); fix the data or leave the sample out "
                     f"(xlvlm extract --skip-bad skips such samples)")


def resolve_path(value: str, where: str, folder: Path | None) -> Path:
    if "\x00" in value:
        raise XlvlmError(f"{where}: image path contains a NUL character; fix the data")
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    if folder is None:
        raise XlvlmError(f"{where}: relative image path {value!r} in hub data; pass the folder holding the images "
                         f"(--image-root)")
    return (folder / path).resolve()


class RowImages:
    """The image column of a split, read one row at a time: ``cell(row)`` gives the column's
    value (a struct, bytes or a path), :meth:`read` its encoded bytes."""

    def __init__(self, cell, column: str, folder: Path | None, name: str):
        self.cell, self.column, self.folder, self.name = cell, column, folder, name

    def label(self, row: int) -> str:
        return f"{self.name} row {row}"

    def read(self, row: int) -> bytes:
        where = f"{self.label(row)} column {self.column!r}"
        with reading(where):
            value = self.cell(row)
        return image_bytes(value, where, self.folder)


class StreamCells:
    """One column of a ``datasets.IterableDataset`` by row number: read in row order, the last
    rows kept (a batch is read twice with --skip-bad); a row behind them restarts the stream."""

    def __init__(self, dataset, column: str):
        self.column = column
        self.rows = dataset.select_columns([column])
        self._kept: OrderedDict[int, object] = OrderedDict()
        self._kept_bytes = 0
        # The open stream, in a list that the finalizer shares: closed after the last row, when
        # restarted, and at exit (a stream left open while the interpreter shuts down aborts it).
        self._stream: list = [None]
        self._next = 0
        self.total: int | None = None  # rows in the split, once counted
        weakref.finalize(self, _close, self._stream)

    def __call__(self, row: int):
        if row in self._kept:
            return self._kept[row]
        if self._stream[0] is None or row < self._next:
            _close(self._stream)
            self._stream[0], self._next = iter(self.rows), 0
        for record in self._stream[0]:
            current, self._next = self._next, self._next + 1
            if current == row:
                value = record[self.column]
                self._keep(row, value)
                if self._next == self.total:
                    _close(self._stream)
                return value
        _close(self._stream)
        raise XlvlmError(f"row {row}: the data ended before this row; it changed while being read")

    def _keep(self, row: int, value) -> None:
        self._kept[row] = value
        self._kept_bytes += _size(value)
        while len(self._kept) > 1 and (len(self._kept) > _KEEP_ROWS or self._kept_bytes > _KEEP_BYTES):
            _, old = self._kept.popitem(last=False)
            self._kept_bytes -= _size(old)


def _close(stream: list) -> None:
    """Close the stream in ``stream[0]`` (a generator: its parquet reader is let go now)."""
    if stream[0] is not None:
        stream[0].close()
        stream[0] = None


def _size(value) -> int:
    """Bytes held by an image cell (its stored bytes; a path counts as nothing)."""
    if isinstance(value, dict):
        value = value.get("bytes")
    return len(value) if isinstance(value, (bytes, bytearray)) else 0


class _DatasetRows:
    """A ``datasets`` split as :func:`read_hf` reads it: columns, records, one image column."""

    def __init__(self, datasets, dataset, streaming: bool):
        self.datasets, self.dataset, self.streaming = datasets, dataset, streaming
        self.column_names = list(dataset.column_names or (dataset.features or {}).keys())
        self.cells = None

    def holds_paths(self, column: str) -> bool:
        feature = (self.dataset.features or {}).get(column)
        return isinstance(feature, self.datasets.Value) and feature.dtype in ("string", "large_string")

    def image_cells(self, column: str):
        if isinstance((self.dataset.features or {}).get(column), self.datasets.Image):
            self.dataset = self.dataset.cast_column(column, self.datasets.Image(decode=False))
        if self.streaming:
            self.cells = StreamCells(self.dataset, column)
            return self.cells
        rows = self.dataset.select_columns([column])
        return lambda row: rows[row][column]

    def records(self, columns: list[str]):
        return iter(self.dataset.select_columns(columns))

    def counted(self, n: int) -> None:
        if self.cells is not None:
            self.cells.total = n


class _ParquetRows:
    """Local parquet files (streaming): :class:`~xlvlm.data.parquet.ParquetTable`."""

    def __init__(self, files: list[str]):
        self.table = ParquetTable(files)
        self.column_names = self.table.column_names

    def holds_paths(self, column: str) -> bool:
        return self.table.holds_paths(column)

    def image_cells(self, column: str):
        return partial(self.table.cell, column=column)

    def records(self, columns: list[str]):
        return self.table.records(columns)

    def counted(self, n: int) -> None:
        pass


def _open_rows(source: str, split: str | None, streaming: bool):
    """``(rows, folder, name)`` of ``hf:SOURCE[:split]``: local parquet streams through
    :class:`_ParquetRows`, everything else through ``datasets``."""
    datasets = _datasets()
    files = _local_files(source)
    if streaming and is_parquet(files):
        what = f"hf:{_files_name(source, files)}"
        if split not in (None, "train"):
            raise XlvlmError(f"{what}: has no split {split!r} (it has train); name one: {what}:train")
        with reading(what):
            return _ParquetRows(files), Path(files[0]).parent, f"{what}:train"
    dataset, folder, name = open_split(source, split, streaming)
    return _DatasetRows(datasets, dataset, streaming), folder, name


def read_hf(spec: str, columns=None, preset: str | None = None, prompt: str | None = None,
            image_root: str | Path | None = None, streaming: bool = False) -> list[dict]:
    """Samples of ``hf:SOURCE[:split]`` (``spec`` without the ``hf:``); see the module docstring."""
    rows, folder, name = _open_rows(*split_spec(spec), streaming)
    if image_root is not None:
        folder = Path(image_root).expanduser()
        if not folder.is_dir():
            raise XlvlmError(f"{folder}: image_root folder not found; pass the folder holding the images")
        folder = folder.resolve()
    fields = column_map(rows.column_names, columns, preset, name)
    paths = rows.holds_paths(fields["image"])
    images = None if paths else RowImages(rows.image_cells(fields["image"]), fields["image"], folder, name)
    # The fields pass reads no image bytes, unless the image is all there is (the rows must be counted).
    wanted = list(dict.fromkeys(c for f, c in fields.items() if f != "image" or paths)) or [fields["image"]]
    samples, seen = [], {}
    with reading(name):
        for row, record in enumerate(rows.records(wanted)):
            where = f"{name} row {row}"
            sample = row_sample(record, fields, row, where, prompt)
            if sample["id"] in seen:
                raise XlvlmError(f"{where}: duplicate id {sample['id']!r} (also row {seen[sample['id']]}); ids must be "
                                 f"unique: map another column with --columns id=COLUMN")
            seen[sample["id"]] = row
            if paths:
                sample["image"] = str(resolve_path(_image_path(record[fields["image"]], where), where, folder))
            else:
                sample["image"] = EncodedImage(images.label(row), partial(images.read, row))
            samples.append(sample)
    if not samples:
        raise XlvlmError(f"{name}: no rows in this split")
    rows.counted(len(samples))
    return samples


def _image_path(value, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise XlvlmError(f"{where}: field 'image' should be a non-empty path, got {type(value).__name__}; fix the data")
    return value


__all__ = ["read_hf"]
