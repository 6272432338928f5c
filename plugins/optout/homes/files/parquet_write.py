"""Write record batches back as CSV or Parquet, with the source's format, columns and types.

Parquet keeps the source's compression column by column and its key-value metadata (Arrow schema
included); repetitive text is written as dictionary indices, near-unique columns get no dictionary
attempt, and data pages hold up to 1M rows rather than pyarrow's 20,000. Batches are encoded on a
thread behind the caller, and the output file (:class:`optout.homes.files.sinks.HashingFile`) is
written and hashed on another. (Encoding row groups two at a time and joining their footers was tried and
removed: 0.98-0.99x the speed of this writer on a quiet machine, a larger peak, and a Thrift parser to keep.)
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from optout.homes.files.csv_dialect import DEFAULT, CsvDialect
from optout.homes.files.csv_io import CsvWriter
from optout.homes.files.formats import BATCH_ROWS, Format, format_of
from optout.homes.files.parquet_read import DICTIONARY_SAMPLE_ROWS, open_parquet, repeats
from optout.homes.files.sinks import HashingFile
from optout.rows import select

# Values the Parquet encoder takes per step (pyarrow: 1024). Larger steps cost less bookkeeping per value
# (statistics, levels, page-size checks): 6% less encoding time here; a page may exceed its 1 MiB target
# by one step at most (64 KiB of int64).
_ENCODER_STEP_VALUES = 8192
# Rows per data page at most (pyarrow: 20,000, which cut 50 pages per column chunk of 1M rows): pages
# still end at 1 MiB, and fewer of them cost 5-7% less encoding time (headers, statistics, compression calls).
_PAGE_ROWS = 1 << 20


class BatchWriter:
    """Write record batches to a CSV or Parquet file, the format taken from ``path``'s extension.

    Parquet copies the compression of ``like`` (the source file, or its footer as read before),
    column by column, when given; CSV copies the dialect of ``like`` (the source file, read in
    ``dialect``). Encoding (the slowest step) runs on a thread behind the caller, one batch at a time,
    while the caller reads and filters the next. Errors surface at a later call.
    ``sha256`` is the file's hash once closed.
    """

    def __init__(
        self,
        path: str | Path,
        schema: pa.Schema,
        *,
        like: str | Path | pq.FileMetaData | None = None,
        dialect: CsvDialect = DEFAULT,
    ) -> None:
        self.path = Path(path)
        self.rows = 0
        self.sha256 = ""
        self._schema = schema
        self._format = format_of(self.path)
        self._sink = HashingFile(self.path)
        self._writer: Any = None
        self._compression: str | dict[str, str] = "snappy"
        self._stored: dict[bytes, bytes] | None = None
        if self._format is Format.PARQUET:
            self._compression, self._stored = _settings_of(like)
        else:
            self._writer = CsvWriter(self._sink, schema, Path(like) if isinstance(like, str | Path) else None, dialect)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="optout-writer")
        self._pending: deque[Future[Any]] = deque()
        self._options: dict[str, Any] | None = None

    def write(self, batch: pa.RecordBatch, keep: np.ndarray | None = None) -> None:
        """Write ``batch``, or only its rows where the bool mask ``keep`` is true.

        The rows are selected here, while earlier batches are still being encoded.
        """
        if keep is not None and not keep.all():
            batch = _without_unused_values(select(batch, keep))
        self.rows += batch.num_rows
        if self._format is Format.PARQUET and self._options is None:
            self._options = self._parquet_options(dictionary_columns(batch))
            self._schema = batch.schema
            self._writer = self._parquet_writer(self._sink)
        self._drain()
        self._pending.append(self._pool.submit(self._write_batch, batch))

    def _write_batch(self, batch: pa.RecordBatch) -> None:
        if self._format is Format.CSV:
            self._writer.write_batch(batch)
        else:
            self._writer.write_batch(batch, row_group_size=max(batch.num_rows, 1))

    def _parquet_options(self, dictionary: list[str] | bool) -> dict[str, Any]:
        """The Parquet writer's settings.

        With a Parquet source, the output carries the source's own key-value metadata, Arrow schema
        included, so readers see the source's column types even where batches were read as dictionaries.
        """
        return {
            "compression": self._compression,
            "use_dictionary": dictionary,
            "write_batch_size": _ENCODER_STEP_VALUES,
            "max_rows_per_page": _PAGE_ROWS,
            "store_schema": self._stored is None,
        }

    def _parquet_writer(self, sink: Any) -> pq.ParquetWriter:
        assert self._options is not None
        writer = pq.ParquetWriter(sink, self._schema, **self._options)
        if self._stored:
            writer.add_key_value_metadata(self._stored)
        return writer

    def _drain(self) -> None:
        """Wait for the write in flight (raising its error)."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        try:
            self._drain()
        finally:
            self._pool.shutdown()
            if self._writer is not None:
                self._writer.close()
            else:  # no batches: the file still carries the schema
                self._options = self._parquet_options(True)
                self._parquet_writer(self._sink).close()
            self._sink.close()
        self.sha256 = self._sink.digest.hexdigest()

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def dictionary_columns(batch: pa.RecordBatch) -> list[str]:
    """The columns worth dictionary-encoding in Parquet: dictionary arrays, and those whose first rows
    repeat their values.

    pyarrow tries a dictionary for every column and falls back to plain encoding once it passes 1 MiB
    in a row group; for near-unique columns (NHS numbers, keys, measurements) the attempt costs about a
    third of the encoding time and saves nothing. A sample of the first rows decides once per file.
    """
    sample = batch.slice(0, DICTIONARY_SAMPLE_ROWS)
    return [
        name
        for name, column in zip(sample.schema.names, sample.columns, strict=True)
        if pa.types.is_dictionary(column.type) or repeats(column)
    ]


def _settings_of(
    like: str | Path | pq.FileMetaData | None,
) -> tuple[str | dict[str, str], dict[bytes, bytes] | None]:
    """The compression (per column) and key-value metadata of a Parquet source (None: not a Parquet source)."""
    if isinstance(like, pq.FileMetaData):
        metadata = like
    elif like is None or format_of(like) is not Format.PARQUET:
        return "snappy", None
    else:
        metadata = open_parquet(Path(like)).metadata
    stored = dict(metadata.metadata or {})
    if metadata.num_row_groups == 0 or metadata.num_columns == 0:
        return "snappy", stored
    first = metadata.row_group(0)
    columns = (first.column(index) for index in range(first.num_columns))
    return {column.path_in_schema: _codec(column.compression) for column in columns}, stored


def _codec(name: str) -> str:
    """The writer's name for a codec as a footer names it."""
    return "none" if name == "UNCOMPRESSED" else name.lower()


def write_table(path: str | Path, table: pa.Table) -> str:
    """Write a whole table (the pandas engine's output) in the format ``path`` names; return its sha256."""
    with BatchWriter(path, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=BATCH_ROWS):
            writer.write(batch)
    return writer.sha256


def _without_unused_values(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Dictionary columns keep only the values their kept rows use.

    Selecting rows leaves a dictionary whole, and the writer stores it whole in the dictionary page: the
    values of removed rows (a removed person's NHS number, written as text) would still be in the file.
    """
    columns = list(batch.columns)
    for index, column in enumerate(columns):
        if not pa.types.is_dictionary(column.type) or not len(column.dictionary):
            continue
        indices = column.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        used = np.zeros(len(column.dictionary), dtype=bool)
        used[indices[column.is_valid().to_numpy(zero_copy_only=False)]] = True
        if used.all():
            continue
        renumbered = (np.cumsum(used) - 1).astype(column.indices.type.to_pandas_dtype())
        new_indices = pa.array(renumbered[indices], mask=column.is_null().to_numpy(zero_copy_only=False))
        columns[index] = pa.DictionaryArray.from_arrays(
            new_indices, select(column.dictionary, used), ordered=column.type.ordered
        )
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)
