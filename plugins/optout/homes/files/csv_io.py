"""CSV files: checked against RFC 4180, read as text columns in record batches, written back in their dialect.

Every value is read as text and written back as text, so leading zeros, dates as written, quoted
newlines and embedded quotes survive a round trip unchanged. A file is read only in the dialect the spec
declares (:class:`~optout.homes.files.csv_dialect.CsvDialect`; undeclared: comma, double quote, UTF-8)
and only after its quoting is checked (:mod:`optout.homes.files.csv_strict`): what does not match is
refused, never guessed at. Errors are :class:`InputError` naming the file, line and column; the text of
a bad row is never shown, because it may hold an NHS number. An output keeps its input's BOM, encoding,
delimiter, line endings, header as written and quoting (every field, or only those that need it).
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from optout.errors import InputError
from optout.homes.files.csv_dialect import DEFAULT, CsvDialect
from optout.homes.files.csv_strict import (
    BLOCK_BYTES,
    LONGEST_RECORD_BYTES,
    CsvLayout,
    check_csv,
    csv_layout,
    long_record_line,
)
from optout.homes.files.formats import require_columns
from optout.nhs_number import is_valid

# Rows of text a batch holds at most: every column is text, a full copy of its bytes, and several batches
# wait at once (the prefetch queue, the one being assembled); Parquet's million-row batches would hold
# half a GiB of CSV text at a time.
CSV_BATCH_ROWS = 1 << 18
_DIGITS = re.compile(r"^[\s\d.,+-]*\d{6}[\s\d.,+-]*$")  # a header cell that is a number, not a name


def csv_header(path: Path, dialect: CsvDialect = DEFAULT) -> list[str]:
    """The header row: every name present, named once, and a name rather than a value from the data."""
    layout = csv_layout(path, dialect)
    try:
        text = layout.header.decode(_codec(layout))
    except UnicodeDecodeError:
        raise _not_encoded(path, dialect, 1) from None
    header = next(csv.reader([text], delimiter=dialect.delimiter, quotechar=dialect.quote, strict=True), [])
    if not header or header == [""]:
        raise InputError("the first line is empty; a CSV extract needs a header row", path=path, line=1)
    seen: set[str] = set()
    for index, name in enumerate(header, start=1):
        if not name.strip():
            raise InputError("the header has an empty column name", path=path, line=1, field=f"column {index}")
        if is_valid(name) or _DIGITS.match(name):
            raise InputError(
                "the first row holds numbers, not column names: a CSV extract needs a header row",
                path=path,
                line=1,
                field=f"column {index}",
            )
        if name in seen:  # named by position: a header row that is really data holds values
            raise InputError("the header names this column twice", path=path, line=1, field=f"column {index}")
        seen.add(name)
    return header


def csv_schema(path: Path, dialect: CsvDialect = DEFAULT) -> pa.Schema:
    """The columns a CSV file is read with: every one as text."""
    return pa.schema([(name, pa.string()) for name in csv_header(path, dialect)])


def csv_batches(
    path: Path, columns: Sequence[str] | None, batch_rows: int, dialect: CsvDialect = DEFAULT
) -> Iterator[pa.RecordBatch]:
    """Stream the named columns (all when None) as text, in batches of about ``batch_rows`` rows."""
    header = csv_header(path, dialect)
    layout = csv_layout(path, dialect)
    require_columns(path, header, columns)
    batch_rows = min(batch_rows, CSV_BATCH_ROWS)
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        include_columns=list(columns) if columns is not None else None,
        strings_can_be_null=False,
    )
    parse = pacsv.ParseOptions(
        delimiter=dialect.delimiter, quote_char=dialect.quote, double_quote=True, newlines_in_values=True
    )
    read = pacsv.ReadOptions(block_size=BLOCK_BYTES, encoding=layout.encoding)
    # The quotes are checked on a thread of their own while Arrow parses; the last batch waits for the
    # verdict, so a file that breaks RFC 4180 is never read to its end.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="optout-csv-check") as pool:
        checked = pool.submit(check_csv, path, dialect)
        try:
            reader = pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
            pending: list[pa.RecordBatch] = []
            rows = 0
            for batch in reader:
                pending.append(batch)
                rows += batch.num_rows
                if rows >= batch_rows:
                    yield from _rebatch(pending)
                    pending, rows = [], 0
        except (pa.ArrowInvalid, UnicodeDecodeError):
            checked.result()  # a quoting error, if any, says most
            raise csv_error(path, dialect) from None
        checked.result()
        yield from _rebatch(pending)


def _rebatch(batches: list[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    if batches:
        yield pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def _codec(layout: CsvLayout) -> str:
    """The codec of the file's text after its BOM (UTF-16's byte order is the BOM's)."""
    if layout.encoding == "utf-16":
        return "utf-16-le" if layout.bom == codecs.BOM_UTF16_LE else "utf-16-be"
    return layout.encoding


def csv_error(path: Path, dialect: CsvDialect) -> InputError:
    """Why a CSV file does not parse, naming the line: a slow exact scan (errors only; also what the Spark
    engine reports when Spark's reader fails a file). Never repeat a reader's text, it quotes the row
    (which is also why the encoding is checked on the file itself, not guessed from the message)."""
    layout, width = csv_layout(path, dialect), len(csv_header(path, dialect))
    bad = _first_line_not_encoded(path, layout)
    if bad is not None:
        return _not_encoded(path, dialect, bad)
    long = long_record_line(path, dialect)
    if long is not None:
        message = f"this row is longer than {LONGEST_RECORD_BYTES >> 20} MiB, the reader's limit: is a quote missing?"
        return InputError(message, path=path, line=long)
    encoding = "utf-8-sig" if dialect.utf8 else layout.encoding
    with path.open(encoding=encoding, newline="") as handle:
        rows = csv.reader(handle, delimiter=dialect.delimiter, quotechar=dialect.quote, strict=True)
        for fields in rows:
            if len(fields) != width:
                return InputError(
                    f"this row has {len(fields)} fields but the header has {width}; "
                    f"quote values holding {dialect.delimiter!r}",
                    path=path,
                    line=rows.line_num,
                )
    return InputError("the CSV file cannot be parsed; check its quoting", path=path)


def _first_line_not_encoded(path: Path, layout: CsvLayout) -> int | None:
    """The first line that is not text in the file's encoding (None: every line is)."""
    codec = _codec(layout)
    if codec.startswith("utf-16"):  # lines cannot be split on bytes: decode the whole (errors only)
        data = path.read_bytes()[len(layout.bom) :]
        try:
            data.decode(codec)
        except UnicodeDecodeError as exc:
            return data[: exc.start].decode(codec, "ignore").count("\n") + 1
        return None
    decoder = codecs.getincrementaldecoder(codec)()
    line = 0
    with path.open("rb") as handle:
        try:
            for line, raw in enumerate(handle, start=1):  # noqa: B007 - the last line is needed after the loop
                decoder.decode(raw)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return max(line, 1)
    return None


def _not_encoded(path: Path, dialect: CsvDialect, line: int) -> InputError:
    declared = "declare the file's encoding in the spec (csv: {encoding: cp1252})" if dialect.utf8 else "check it"
    return InputError(f"this line is not {dialect.encoding} text; {declared}", path=path, line=line)


class CsvWriter:
    """Write record batches of text as CSV in the dialect of ``like`` (the input), or RFC 4180 UTF-8.

    A column the input's first row quoted is quoted throughout, any other field only when it holds the
    delimiter, a quote or a line break. Arrow's writer quotes every text value or none, so it writes the
    batches where that is the same (a file quoted throughout, or nowhere with nothing to quote); the
    rest is joined with Arrow compute on whole columns. The header is the input's, as written.
    """

    def __init__(self, sink: Any, schema: pa.Schema, like: Path | None, dialect: CsvDialect = DEFAULT) -> None:
        self._sink = sink
        self._dialect = dialect
        layout = csv_layout(like, dialect) if like is not None else None
        self._codec = _codec(layout) if layout is not None else "utf-8"
        self._eol = layout.eol if layout is not None else "\n"
        same = layout is not None and like is not None and csv_header(like, dialect) == schema.names
        self._quoted = layout.quoted if same and layout is not None and layout.quoted else (False,) * len(schema)
        self._special = [dialect.delimiter, dialect.quote, "\r", "\n"]
        if same and layout is not None:
            sink.write(layout.bom + layout.header + self._eol.encode(self._codec))
        else:
            found = [char for char in self._special if any(char in name for name in schema.names)]
            names = self._where_needed(pa.array(schema.names, pa.string()), found)
            header = dialect.delimiter.join(names.to_pylist()) + self._eol
            sink.write((layout.bom if layout is not None else b"") + header.encode(self._codec))

    def write_batch(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        texts = [_as_text(column) for column in batch.columns]
        found = [[char for char in self._special if char.encode() in bytes(_values(text, "utf-8"))] for text in texts]
        if self._arrow_writes(found):  # one quoting for every field: Arrow's writer is ~3x faster than joining
            quoting = "all_valid" if self._quoted[0] else "none"
            options = pacsv.WriteOptions(
                include_header=False, delimiter=self._dialect.delimiter, eol=self._eol, quoting_style=quoting
            )
            table = pa.Table.from_arrays(texts, names=[str(index) for index in range(len(texts))])
            out = pa.BufferOutputStream()
            pacsv.write_csv(table, out, options)
            data = out.getvalue()
            self._sink.write(data if self._codec == "utf-8" else data.to_pybytes().decode("utf-8").encode(self._codec))
            return
        # One join of every piece, the delimiters, quotes and line end among them (fewer copies than
        # enclosing each quoted column first).
        delimiter, quote = self._dialect.delimiter, self._dialect.quote
        pieces: list[pa.Array | str] = []
        for index, (text, quoted, chars) in enumerate(zip(texts, self._quoted, found, strict=False)):
            after = delimiter if index < len(texts) - 1 else self._eol
            if quoted:
                escaped = pc.replace_substring(text, quote, quote * 2) if quote in chars else text
                pieces += [quote, escaped, quote + after]
            else:
                pieces += [self._where_needed(text, chars), after]
        self._sink.write(_values(pc.binary_join_element_wise(*pieces, ""), self._codec))

    def _arrow_writes(self, found: list[list[str]]) -> bool:
        """Whether Arrow's writer writes this batch as the input was: it quotes every field (doubling
        quotes) or none (and none needs one), with ``"`` as the quote."""
        if self._dialect.quote != '"' or len(set(self._quoted)) != 1:
            return False
        return self._quoted[0] or not any(found)

    def _where_needed(self, text: pa.Array, found: list[str]) -> pa.Array:
        """One unquoted column's fields, quoted (quotes doubled) where they hold ``found`` characters."""
        if not found:
            return text
        quote = self._dialect.quote
        escaped = pc.replace_substring(text, quote, quote * 2) if quote in found else text
        needs = pc.match_substring(text, found[0])
        for char in found[1:]:
            needs = pc.or_(needs, pc.match_substring(text, char))
        return pc.if_else(needs, pc.binary_join_element_wise(quote, escaped, quote, ""), text)

    def close(self) -> None:
        """Nothing is buffered here: the sink is closed by its owner."""


def _as_text(column: pa.Array) -> pa.Array:
    """A column as text, a missing value as an empty field."""
    text = column.cast(pa.string())
    return pc.fill_null(text, "") if text.null_count else text


def _values(text: pa.Array, codec: str) -> bytes | memoryview:
    """A text array's values, one after another, in ``codec``."""
    _, offsets, values = text.buffers()
    first, last = np.frombuffer(offsets, np.int32)[[text.offset, text.offset + len(text)]]
    data = memoryview(values)[int(first) : int(last)] if values is not None else memoryview(b"")
    return data if codec == "utf-8" else bytes(data).decode("utf-8").encode(codec)
