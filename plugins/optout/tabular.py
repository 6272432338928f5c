"""Read CSV and Parquet files in record batches, and write batches back in the same format.

Memory stays bounded whatever the file size: files are streamed batch by batch. CSV columns are read
as text and written back as text, so every value (leading zeros, dates as written, quoted newlines and
embedded quotes) survives a round trip unchanged; Parquet keeps its schema, metadata and compression.
Errors are :class:`InputError` naming the file, line and column; the text of a bad row is never shown,
because it may hold an NHS number.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from enum import StrEnum
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from optout.atomic import OWNER_ONLY_FILE
from optout.errors import InputError
from optout.parquet_footer import MAGIC, JoinedFooter, split

BATCH_ROWS = 1 << 20  # one default Parquet row group: large enough to amortise per-batch overhead
BATCH_BYTES = 32 << 20  # ...but wide rows (long text, many columns) get fewer rows, so memory stays bounded
_CSV_BLOCK_BYTES = 16 << 20
T = TypeVar("T")
R = TypeVar("R")
_DICTIONARY_SAMPLE_ROWS = 1 << 16
_SORTABLE_WIDTHS = {8: pa.int8(), 16: pa.int16(), 32: pa.int32(), 64: pa.int64()}
_SINK_BUFFER_BYTES = 1 << 20  # gathered before each write to the file
_IOV_MAX = os.sysconf("SC_IOV_MAX")  # pieces per write
# Values the Parquet encoder takes per step (pyarrow: 1024). Larger steps cost less bookkeeping per value
# (statistics, levels, page-size checks): 6% less encoding time here; a page may exceed its 1 MiB target
# by one step at most (64 KiB of int64).
_ENCODER_STEP_VALUES = 8192
# Rows per data page at most (pyarrow: 20,000, which cut 50 pages per column chunk of 1M rows): pages
# still end at 1 MiB, and fewer of them cost 5-7% less encoding time (headers, statistics, compression calls).
_PAGE_ROWS = 1 << 20
_ENCODERS = 2  # row groups encoded at once, each on its own thread, then joined in order
_JOINED_MIN_ROWS = 1 << 17  # smaller row groups are encoded one after another, into the file itself


class Format(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


def format_of(path: str | Path, *, field: str | None = None, source: str | Path | None = None) -> Format:
    """The format named by a file's extension; anything but ``.csv`` and ``.parquet`` is refused."""
    suffix = Path(path).suffix.lower().lstrip(".")
    try:
        return Format(suffix)
    except ValueError:
        raise InputError(
            f"cannot tell the format of {Path(path).name!r}: name it .csv or .parquet",
            path=source if source is not None else path,
            field=field,
        ) from None


def schema_of(path: str | Path) -> pa.Schema:
    """The columns and types a file would be read with (CSV: every column as text)."""
    path = Path(path)
    if format_of(path) is Format.PARQUET:
        return _open_parquet(path).schema_arrow
    return pa.schema([(name, pa.string()) for name in _csv_header(path)])


def count_rows(path: str | Path) -> int:
    """Rows in a file: from the footer for Parquet, by streaming for CSV."""
    path = Path(path)
    if format_of(path) is Format.PARQUET:
        return _open_parquet(path).metadata.num_rows
    return sum(batch.num_rows for batch in read_batches(path, columns=[]))


def read_batches(
    path: str | Path,
    columns: Sequence[str] | None = None,
    batch_rows: int = BATCH_ROWS,
    *,
    as_dictionary: Sequence[str] = (),
) -> Iterator[pa.RecordBatch]:
    """Stream a CSV or Parquet file as record batches of the named columns (all when None).

    Parquet text columns named in ``as_dictionary`` come as dictionary arrays (see
    :func:`repetitive_text_columns`). A named column that the file lacks is an :class:`InputError`.
    """
    path = Path(path)
    if format_of(path) is Format.PARQUET:
        return _parquet_batches(path, columns, batch_rows, as_dictionary)
    return _csv_batches(path, columns, batch_rows)


def repetitive_text_columns(path: str | Path, exclude: Sequence[str] = ()) -> list[str]:
    """The text columns of a Parquet file whose first rows repeat their values (codes, categories).

    Read as dictionaries, they are decoded, selected and re-encoded as small integer indices: several
    times cheaper than the strings. A CSV file has none (its values stay text, exactly as written).
    """
    path = Path(path)
    if format_of(path) is not Format.PARQUET:
        return []
    parquet = _open_parquet(path)
    text = [
        field.name
        for field in parquet.schema_arrow
        if field.name not in exclude and (pa.types.is_string(field.type) or pa.types.is_large_string(field.type))
    ]
    if not text or parquet.metadata.num_rows == 0:
        return []
    sample = next(parquet.iter_batches(batch_size=_DICTIONARY_SAMPLE_ROWS, columns=text))
    return [name for name in text if _repeats(sample.column(name))]


def _missing(path: Path, names: Sequence[str], wanted: Sequence[str] | None) -> None:
    for column in wanted or ():
        if column not in names:
            raise InputError(f"no column {column!r}; the file has: {', '.join(names)}", path=path, field=column)


def _open_parquet(path: Path, as_dictionary: Sequence[str] = ()) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path, read_dictionary=list(as_dictionary) or None)
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file ({type(exc).__name__})", path=path) from None


def _parquet_batches(
    path: Path, columns: Sequence[str] | None, batch_rows: int, as_dictionary: Sequence[str]
) -> Iterator[pa.RecordBatch]:
    parquet = _open_parquet(path, as_dictionary)
    _missing(path, parquet.schema_arrow.names, columns)
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
        self._file = _open_parquet(self.path, as_dictionary)
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
        _missing(self.path, self.schema.names, columns)
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


def _csv_header(path: Path) -> list[str]:
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
    for name in header:
        if not name.strip():
            raise InputError("the header has an empty column name", path=path, line=1)
        if name in seen:
            raise InputError("the header names this column twice", path=path, line=1, field=name)
        seen.add(name)
    return header


def _csv_batches(path: Path, columns: Sequence[str] | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
    header = _csv_header(path)
    _missing(path, header, columns)
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


class _HashingFile(io.RawIOBase):
    """An owner-only output file that hashes what is written, so nothing is read back for the manifest.

    Encoders write many small pieces (page headers) and a few large ones (pages). Pieces are gathered
    without copying (pyarrow hands over fresh ``bytes``) and stored about 1 MiB at a time: writing to
    disk and hashing run in order on a thread of their own (both release the GIL), so the encoder that
    calls :meth:`write` never waits for either. The first failure is raised by the next call, or by
    :meth:`close`.
    """

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, OWNER_ONLY_FILE)
        self.digest = hashlib.sha256()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="optout-file")
        self._failure: BaseException | None = None
        self._gathered: list[bytes | memoryview] = []
        self._gathered_bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._raise_failure()
        chunk = data if type(data) is bytes else bytes(data)  # a view's memory may be reused once this returns
        self._gather(chunk)
        return len(chunk)

    def _gather(self, chunk: bytes | memoryview) -> None:
        if len(chunk):
            self._gathered.append(chunk)
            self._gathered_bytes += len(chunk)
            if self._gathered_bytes >= _SINK_BUFFER_BYTES:
                self.flush()

    def write_unchanging(self, data: memoryview) -> None:
        """Write memory that nobody changes afterwards (an encoded row group), without copying it."""
        self._raise_failure()
        self._gather(data)

    def flush(self) -> None:
        if self._gathered:
            self._worker.submit(self._store, self._gathered)
            self._gathered, self._gathered_bytes = [], 0

    def _store(self, chunks: list[bytes | memoryview]) -> None:
        if self._failure is not None:
            return
        try:
            _write_all(self._fd, chunks)
            for chunk in chunks:
                self.digest.update(chunk)
        except BaseException as exc:  # raised on the caller's thread
            self._failure = exc

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.flush()
        finally:
            self._worker.shutdown(wait=True)
            os.close(self._fd)
            super().close()
        self._raise_failure()


class _Pieces(io.RawIOBase):
    """An in-memory file kept as the ``bytes`` pyarrow writes: no buffer grows and copies itself."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if len(data):
            self.pieces.append(data if type(data) is bytes else bytes(data))
        return len(data)


def _write_all(fd: int, chunks: list[bytes | memoryview]) -> None:
    """Write non-empty ``chunks`` in order with few system calls, resuming after a short write."""
    pending = deque(memoryview(chunk) for chunk in chunks)
    while pending:
        written = os.writev(fd, list(islice(pending, _IOV_MAX)))
        while written:
            if written >= len(pending[0]):
                written -= len(pending.popleft())
            else:
                pending[0] = pending[0][written:]
                written = 0


class BatchWriter:
    """Write record batches to a CSV or Parquet file, the format taken from ``path``'s extension.

    Parquet copies the compression of ``like`` (the source file, or its footer as read before),
    column by column, when given. Encoding (the slowest step) runs behind the caller: Parquet row
    groups of at least :data:`_JOINED_MIN_ROWS` are encoded two at a time, each on a thread of its own
    as a small file, and joined in order (see :mod:`optout.parquet_footer`), since pyarrow's encoder
    uses one core; smaller ones, and CSV, are written on one thread. Errors surface at a later call.
    ``sha256`` is the file's hash once closed.
    """

    def __init__(
        self, path: str | Path, schema: pa.Schema, *, like: str | Path | pq.FileMetaData | None = None
    ) -> None:
        self.path = Path(path)
        self.rows = 0
        self.sha256 = ""
        self._schema = schema
        self._format = format_of(self.path)
        self._sink = _HashingFile(self.path)
        self._writer: Any = None
        self._compression: str | dict[str, str] = "snappy"
        self._stored: dict[bytes, bytes] | None = None
        if self._format is Format.PARQUET:
            self._compression, self._stored = _settings_of(like)
        else:
            options = pacsv.WriteOptions(quoting_style="needed")
            self._writer = pacsv.CSVWriter(self._sink, schema, write_options=options)
        workers = _ENCODERS if self._format is Format.PARQUET else 1
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="optout-writer")
        self._pending: deque[Future[Any]] = deque()
        self._options: dict[str, Any] | None = None
        self._footer = JoinedFooter()
        self._position = 0

    def write(self, batch: pa.RecordBatch, keep: np.ndarray | None = None) -> None:
        """Write ``batch``, or only its rows where the bool mask ``keep`` is true.

        The rows are selected here, while earlier batches are still being encoded.
        """
        if keep is not None and not keep.all():
            batch = batch.filter(pa.array(keep))
        self.rows += batch.num_rows
        if self._format is Format.PARQUET and self._options is None:
            self._options = self._parquet_options(dictionary_columns(batch))
            self._schema = batch.schema  # every row group's: the footers are joined
            if batch.num_rows < _JOINED_MIN_ROWS:  # joining costs about 1.5 ms a row group (of 3 columns)
                self._writer = self._parquet_writer(self._sink)
        if self._writer is not None:  # CSV, or Parquet in small batches: one at a time
            self._drain()
            self._pending.append(self._pool.submit(self._write_batch, batch))
        else:
            self._pending.append(self._pool.submit(self._encode, batch))
            self._drain(leave=_ENCODERS)

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

    def _encode(self, batch: pa.RecordBatch) -> list[bytes]:
        """One row group as a Parquet file of its own, in memory, in the pieces pyarrow wrote (any thread)."""
        encoded = _Pieces()
        with self._parquet_writer(encoded) as writer:
            writer.write_batch(batch, row_group_size=max(batch.num_rows, 1))
        return encoded.pieces

    def _parquet_writer(self, sink: Any) -> pq.ParquetWriter:
        assert self._options is not None
        writer = pq.ParquetWriter(sink, self._schema, **self._options)
        if self._stored:
            writer.add_key_value_metadata(self._stored)
        return writer

    def _append(self, encoded: list[bytes]) -> None:
        """Put a row group encoded apart at the end of the file, in order (see :mod:`optout.parquet_footer`)."""
        body, footer = split(encoded)
        if not self._position:
            self._sink.write(MAGIC)
            self._position = len(MAGIC)
        self._footer.add(footer, shift=self._position - len(MAGIC))
        for view in body:
            self._sink.write_unchanging(view)
            self._position += len(view)

    def _drain(self, leave: int = 0) -> None:
        """Wait for the oldest writes until ``leave`` are left; row groups encoded apart join the file."""
        while len(self._pending) > leave:
            result = self._pending.popleft().result()
            if self._writer is None:
                self._append(result)

    def close(self) -> None:
        try:
            self._drain()
        finally:
            self._pool.shutdown()
            if self._writer is not None:
                self._writer.close()
            elif self._position:
                self._sink.write(self._footer.tail())
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
    sample = batch.slice(0, _DICTIONARY_SAMPLE_ROWS)
    return [
        name
        for name, column in zip(sample.schema.names, sample.columns, strict=True)
        if pa.types.is_dictionary(column.type) or _repeats(column)
    ]


def _repeats(column: pa.Array) -> bool:
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


def _settings_of(
    like: str | Path | pq.FileMetaData | None,
) -> tuple[str | dict[str, str], dict[bytes, bytes] | None]:
    """The compression (per column) and key-value metadata of a Parquet source (None: not a Parquet source)."""
    if isinstance(like, pq.FileMetaData):
        metadata = like
    elif like is None or format_of(like) is not Format.PARQUET:
        return "snappy", None
    else:
        metadata = _open_parquet(Path(like)).metadata
    stored = dict(metadata.metadata or {})
    if metadata.num_row_groups == 0 or metadata.num_columns == 0:
        return "snappy", stored
    first = metadata.row_group(0)
    columns = (first.column(index) for index in range(first.num_columns))
    return {column.path_in_schema: _codec(column.compression) for column in columns}, stored


def _codec(name: str) -> str:
    """The writer's name for a codec as a footer names it."""
    return "none" if name == "UNCOMPRESSED" else name.lower()


def prefetch(batches: Iterator[pa.RecordBatch], depth: int = 2) -> Iterator[pa.RecordBatch]:
    """Read ahead on a background thread (Arrow decodes without the GIL); at most ``depth`` batches wait."""
    ahead: queue.Queue[Any] = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def hand_over(item: Any) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not hand_over(batch):
                    return
            hand_over(done)
        except BaseException as exc:  # handed to the consumer, raised there
            hand_over(exc)

    thread = threading.Thread(target=produce, name="optout-reader", daemon=True)
    thread.start()
    try:
        while (item := ahead.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


@contextmanager
def reused_memory() -> Iterator[None]:
    """Allocate Arrow buffers from the system allocator while a stream of batches is processed.

    Arrow's default pool (mimalloc) hands freed memory back to the kernel within milliseconds, so every
    batch-sized buffer is zeroed afresh by the kernel: measured here, that kernel time was a third of
    the file filter's CPU time, and the filter ran 10-20% slower. Buffers remember their pool, so those
    made before or after are unaffected.
    """
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def map_ahead(function: Callable[[T], R], items: Iterable[T], workers: int = 2) -> Iterator[R]:
    """``map(function, items)`` on ``workers`` threads, in order; at most one item per worker waits ahead.

    Worth it for NumPy and Arrow work, which releases the GIL. The first item runs alone, so whatever
    ``function`` builds lazily (a check result's lookups) is built once, before the threads share it.
    """
    items = iter(items)
    for first in islice(items, 1):
        yield function(first)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="optout-worker") as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def write_table(path: str | Path, table: pa.Table) -> str:
    """Write a whole table (the pandas engine's output) in the format ``path`` names; return its sha256."""
    with BatchWriter(path, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=BATCH_ROWS):
            writer.write(batch)
    return writer.sha256


__all__ = [
    "BATCH_ROWS",
    "BatchWriter",
    "Format",
    "ParquetParts",
    "count_rows",
    "format_of",
    "map_ahead",
    "prefetch",
    "read_batches",
    "repetitive_text_columns",
    "reused_memory",
    "schema_of",
    "write_table",
]
