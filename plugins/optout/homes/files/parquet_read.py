"""Parquet files read in record batches: whole files, or one open file in parts of whole row groups.

Batches are sized by the footer's statistics, so wide rows come fewer at a time and memory stays
bounded; a damaged file is an :class:`InputError` naming it, never Arrow's text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from optout.errors import InputError
from optout.homes.files.formats import BATCH_BYTES, BATCH_ROWS, Format, format_of, require_columns

DICTIONARY_SAMPLE_ROWS = 1 << 16  # rows sampled to choose dictionary columns
_SORTABLE_WIDTHS = {8: pa.int8(), 16: pa.int16(), 32: pa.int32(), 64: pa.int64()}


def open_parquet(path: Path, as_dictionary: Sequence[str] = ()) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path, read_dictionary=list(as_dictionary) or None)
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file ({type(exc).__name__})", path=path) from None


def parquet_batches(
    path: Path, columns: Sequence[str] | None, batch_rows: int, as_dictionary: Sequence[str]
) -> Iterator[pa.RecordBatch]:
    parquet = open_parquet(path, as_dictionary)
    require_columns(path, parquet.schema_arrow.names, columns)
    rows = _rows_per_batch(parquet.metadata, columns, batch_rows)
    yield from _iter_parquet(path, parquet, columns, rows)


def _iter_parquet(
    path: Path, parquet: pq.ParquetFile, columns: Sequence[str] | None, rows: int, row_groups: list[int] | None = None
) -> Iterator[pa.RecordBatch]:
    wanted = list(columns) if columns is not None else None
    try:
        yield from parquet.iter_batches(batch_size=rows, row_groups=row_groups, columns=wanted)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"Parquet file is damaged ({type(exc).__name__})", path=path) from None


def _rows_per_batch(metadata: pq.FileMetaData, columns: Sequence[str] | None, batch_rows: int | None = None) -> int:
    rows = int(BATCH_BYTES / max(_bytes_per_row(metadata, columns), 1.0))
    return min(batch_rows or BATCH_ROWS, max(4096, rows))


class ParquetParts:
    """One open Parquet file, read in parts: runs of whole row groups of about one batch each.

    Reads of a part yield batches of the same size whichever columns they name (set by all the
    columns), so two passes over different columns line up batch by batch. Dictionary columns end a
    batch at every row group (their dictionary changes there), so a file that has them is read one row
    group per part. The file stays open between passes: one replaced meanwhile is not read half old,
    half new.
    """

    def __init__(self, path: str | Path, as_dictionary: Sequence[str] = ()) -> None:
        self.path = Path(path)
        self._file = open_parquet(self.path, as_dictionary)
        self.schema = self._file.schema_arrow
        self.metadata = metadata = self._file.metadata
        self._rows = _rows_per_batch(metadata, None)
        self.parts: list[list[int]] = []
        dictionaries = bool(as_dictionary) or any(pa.types.is_dictionary(field.type) for field in self.schema)
        rows = 0  # in the last part
        for group in range(metadata.num_row_groups):
            if not self.parts or dictionaries or rows >= self._rows:
                self.parts.append([])
                rows = 0
            self.parts[-1].append(group)
            rows += metadata.row_group(group).num_rows

    def rows_in(self, part: int) -> int:
        """Rows in one part, from the footer."""
        return sum(self.metadata.row_group(group).num_rows for group in self.parts[part])

    def bytes_per_row(self, columns: Sequence[str]) -> float:
        """Uncompressed bytes per row of ``columns``, from the footer (an estimate of their Arrow size)."""
        return _bytes_per_row(self.metadata, columns)

    def read(self, part: int, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The batches of one part, of the named columns (all when None)."""
        require_columns(self.path, self.schema.names, columns)
        return _iter_parquet(self.path, self._file, columns, self._rows, self.parts[part])


def _bytes_per_row(metadata: pq.FileMetaData, columns: Sequence[str] | None) -> float:
    """Uncompressed bytes per row of the columns read, from the row groups' statistics."""
    if metadata.num_rows == 0:
        return 0.0
    wanted = set(columns) if columns is not None else None
    total = 0
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for index in range(row_group.num_columns):
            chunk = row_group.column(index)
            if wanted is None or chunk.path_in_schema.split(".")[0] in wanted:
                total += chunk.total_uncompressed_size
    return total / metadata.num_rows


def repetitive_text_columns(path: str | Path, exclude: Sequence[str] = ()) -> list[str]:
    """The text columns of a Parquet file whose first rows repeat their values (codes, categories).

    Read as dictionaries, they are decoded, selected and re-encoded as small integer indices: several
    times cheaper than the strings. A CSV file has none (its values stay text, exactly as written).
    """
    path = Path(path)
    if format_of(path) is not Format.PARQUET:
        return []
    parquet = open_parquet(path)
    text = [
        field.name
        for field in parquet.schema_arrow
        if field.name not in exclude and (pa.types.is_string(field.type) or pa.types.is_large_string(field.type))
    ]
    if not text or parquet.metadata.num_rows == 0:
        return []
    sample = next(parquet.iter_batches(batch_size=DICTIONARY_SAMPLE_ROWS, columns=text))
    return [name for name in text if repeats(sample.column(name))]


def repeats(column: pa.Array) -> bool:
    """At least every other value of the sample is a repeat (nested types: assumed, pyarrow decides).

    Numbers, dates and times are counted by sorting their bits: ten times quicker than pyarrow's
    ``count_distinct`` on floats, and this runs before the first batch can be encoded.
    """
    kind = column.type
    if pa.types.is_primitive(kind) and kind.bit_width in _SORTABLE_WIDTHS:
        values = np.sort(column.drop_null().view(_SORTABLE_WIDTHS[kind.bit_width]).to_numpy())
        distinct = int(np.count_nonzero(values[1:] != values[:-1])) + min(len(values), 1)
    else:
        try:
            distinct = pc.count_distinct(column).as_py()
        except pa.ArrowNotImplementedError:
            return True
    return distinct * 2 <= len(column)
