"""CSV files: read as text columns in record batches, written back as text.

Every value is read as text and written back as text, so leading zeros, dates as written, quoted
newlines and embedded quotes survive a round trip unchanged. Errors are :class:`InputError` naming the
file, line and column; the text of a bad row is never shown, because it may hold an NHS number.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from optout.errors import InputError
from optout.homes.files.formats import require_columns

_CSV_BLOCK_BYTES = 16 << 20


def csv_header(path: Path) -> list[str]:
    """The header row: UTF-8, every name present and named once."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), None)
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    if not header:
        raise InputError("the file is empty; a CSV extract needs a header row", path=path, line=1)
    seen: set[str] = set()
    for index, name in enumerate(header):
        if not name.strip():
            raise InputError("the header has an empty column name", path=path, line=1)
        if name in seen:  # named by position: a header row that is really data holds values
            raise InputError("the header names this column twice", path=path, line=1, field=f"column {index + 1}")
        seen.add(name)
    return header


def csv_schema(path: Path) -> pa.Schema:
    """The columns a CSV file is read with: every one as text."""
    return pa.schema([(name, pa.string()) for name in csv_header(path)])


def csv_writer(sink: Any, schema: pa.Schema) -> pacsv.CSVWriter:
    """A writer of record batches as CSV text, quoting only values that need it."""
    return pacsv.CSVWriter(sink, schema, write_options=pacsv.WriteOptions(quoting_style="needed"))


def csv_batches(path: Path, columns: Sequence[str] | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Stream the named columns (all when None) as text, in batches of about ``batch_rows`` rows."""
    header = csv_header(path)
    require_columns(path, header, columns)
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        include_columns=list(columns) if columns is not None else None,
        strings_can_be_null=False,
    )
    parse = pacsv.ParseOptions(newlines_in_values=True)
    try:
        read = pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES)
        reader = pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
        pending: list[pa.RecordBatch] = []
        rows = 0
        for batch in reader:
            pending.append(batch)
            rows += batch.num_rows
            if rows >= batch_rows:
                yield from _rebatch(pending)
                pending, rows = [], 0
        _require_closed_quotes(path)
        yield from _rebatch(pending)
    except pa.ArrowInvalid as exc:
        raise _csv_error(path, len(header), str(exc)) from None


def _rebatch(batches: list[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    if batches:
        yield pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def _csv_error(path: Path, width: int, arrow_message: str) -> InputError:
    """Find the bad line with a slow exact scan (errors only); never repeat Arrow's text, it quotes the row
    (which is also why the encoding is checked on the file itself, not guessed from the message)."""
    bad = _first_line_not_utf8(path)
    if bad is not None:
        return _not_utf8(path, bad)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = csv.reader(handle)
        for fields in rows:
            if len(fields) != width:
                return InputError(
                    f"this row has {len(fields)} fields but the header has {width}; quote values holding commas",
                    path=path,
                    line=rows.line_num,
                )
    return InputError("the CSV file cannot be parsed; check its quoting", path=path)


def _require_closed_quotes(path: Path) -> None:
    """Refuse a quote opened and never closed: Arrow reads the rest of the file into that one value,
    rows of other people included, and would pass them on as text."""
    quotes = 0
    with path.open("rb") as handle:
        while block := handle.read(_CSV_BLOCK_BYTES):
            quotes += block.count(b'"')
    if quotes % 2 == 0:
        return
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = csv.reader(handle, strict=True)
        start = 1
        try:
            for _ in rows:
                start = rows.line_num + 1
        except csv.Error:
            raise InputError(
                "a quoted value starting on this line is never closed; add the closing quote", path=path, line=start
            ) from None


def _first_line_not_utf8(path: Path) -> int | None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 0
    with path.open("rb") as handle:
        try:
            for line, raw in enumerate(handle, start=1):  # noqa: B007 - the last line is needed after the loop
                decoder.decode(raw)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return max(line, 1)
    return None


def _not_utf8(path: Path, line: int | None = None) -> InputError:
    """Name the first line that is not UTF-8 (the header is read in blocks, so the error may come later)."""
    line = line if line is not None else _first_line_not_utf8(path)
    return InputError("this line is not UTF-8 text; save the file as UTF-8", path=path, line=line or 1)
