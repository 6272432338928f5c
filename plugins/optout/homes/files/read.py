"""Any extract file read as record batches: the format's reader chosen by the file's extension."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from optout.errors import InputError
from optout.homes.files.csv_dialect import DEFAULT, CsvDialect
from optout.homes.files.csv_io import csv_batches, csv_schema
from optout.homes.files.formats import BATCH_ROWS, Format, format_of
from optout.homes.files.parquet_read import open_parquet, parquet_batches
from optout.nhs_number import names_for_message


def schema_of(path: str | Path, dialect: CsvDialect = DEFAULT) -> pa.Schema:
    """The columns and types a file would be read with (CSV: every column as text, in ``dialect``)."""
    path = Path(path)
    if format_of(path) is Format.PARQUET:
        schema = open_parquet(path).schema_arrow
        if len(set(schema.names)) != len(schema.names):
            twice = sorted({name for name in schema.names if schema.names.count(name) > 1})
            raise InputError(f"the file names a column twice: {names_for_message(twice)}", path=path)
        return schema
    return csv_schema(path, dialect)


def count_rows(path: str | Path, dialect: CsvDialect = DEFAULT) -> int:
    """Rows in a file: from the footer for Parquet, by streaming for CSV."""
    path = Path(path)
    if format_of(path) is Format.PARQUET:
        return open_parquet(path).metadata.num_rows
    return sum(batch.num_rows for batch in read_batches(path, columns=[], dialect=dialect))


def read_batches(
    path: str | Path,
    columns: Sequence[str] | None = None,
    batch_rows: int = BATCH_ROWS,
    *,
    as_dictionary: Sequence[str] = (),
    dialect: CsvDialect = DEFAULT,
) -> Iterator[pa.RecordBatch]:
    """Stream a CSV or Parquet file as record batches of the named columns (all when None).

    Parquet text columns named in ``as_dictionary`` come as dictionary arrays (see
    :func:`optout.homes.files.parquet_read.repetitive_text_columns`). A named column that the file lacks
    is an :class:`InputError`. A CSV file is read in ``dialect`` (the table's ``csv:`` in the spec).
    """
    path = Path(path)
    if format_of(path) is Format.PARQUET:
        return parquet_batches(path, columns, batch_rows, as_dictionary)
    return csv_batches(path, columns, batch_rows, dialect)
