"""Local parquet files read a row group at a time: how ``hf:FILE.parquet --streaming`` reads.

Nothing is copied and at most one row group of one column is held. Each read is a whole,
synchronous pyarrow call (``read_row_group``, one thread, no pre-buffering): no scan is ever
left half-consumed, which pyarrow's dataset scanner (what ``datasets`` streams parquet with)
does not survive at interpreter exit (it can abort or hang the process).
"""

from __future__ import annotations

from bisect import bisect_right
from pathlib import Path


def _open(path: str):
    import pyarrow.parquet as pq

    return pq.ParquetFile(path, pre_buffer=False)


class ParquetTable:
    """The rows of parquet files in order, file after file (``files``: paths)."""

    def __init__(self, files: list[str]):
        self.files = list(files)
        self.groups: list[tuple[str, int, int]] = []  # (file, row group, first row)
        row = 0
        for path in self.files:
            metadata = _open(path).metadata
            for group in range(metadata.num_row_groups):
                self.groups.append((path, group, row))
                row += metadata.row_group(group).num_rows
        self.num_rows = row
        self.schema = _open(self.files[0]).schema_arrow
        self.column_names = list(self.schema.names)
        self._starts = [first for _, _, first in self.groups]
        self._cached: tuple[int, str, list] | None = None  # (row group index, column, its values)

    def holds_paths(self, column: str) -> bool:
        """Whether ``column`` holds strings (image paths) rather than image bytes."""
        import pyarrow as pa

        kind = self.schema.field(column).type
        return pa.types.is_string(kind) or pa.types.is_large_string(kind)

    def _read(self, index: int, columns: list[str]) -> list:
        path, group, _ = self.groups[index]
        return _open(path).read_row_group(group, columns=columns, use_threads=False).to_pylist()

    def records(self, columns: list[str]):
        """Each row as ``{column: value}`` for ``columns``, in order."""
        for index in range(len(self.groups)):
            yield from self._read(index, columns)

    def cell(self, row: int, column: str):
        """One cell; the row group of the last cell read is kept (rows are mostly read in order)."""
        index = bisect_right(self._starts, row) - 1
        if self._cached is None or self._cached[:2] != (index, column):
            self._cached = None  # the old group goes before the new one is read
            self._cached = (index, column, [r[column] for r in self._read(index, [column])])
        return self._cached[2][row - self.groups[index][2]]


def is_parquet(files: list[str] | None) -> bool:
    return bool(files) and all(Path(f).suffix.lower() == ".parquet" for f in files)
