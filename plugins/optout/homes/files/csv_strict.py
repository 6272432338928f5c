"""RFC 4180 checked on a CSV file's raw code units with NumPy, beside Arrow's parse.

Arrow's parser is lenient where a filter must not be: it reads a quote inside an unquoted field as text
(``a"b``), takes text after a closing quote, and a stray quote can make one value of the rest of a file.
Whatever fools the reader fools the proof too, so every quote of the file is checked, without a Python
loop: it must open a field, close one (followed by a delimiter, a line end or the end of the file) or
be half of a doubled quote inside one, and every quote opened must close. Which quotes open is known
from their parity, so only the quotes and their neighbours are looked at. The first records give the
layout an output copies: BOM, line endings, header as written, and which columns are quoted. Errors
name the file, line and column, never a value. Results are kept per file identity, so the passes of one
run check a file once.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from optout.errors import InputError
from optout.homes.files.csv_dialect import CsvDialect

_CHUNK_UNITS = 1 << 24  # code units checked at a time: bounded temporaries whatever the file's size
_PREFIX_BYTES = 1 << 16  # read for the header and first row (more when they are longer)
BLOCK_BYTES = 4 << 20  # Arrow's block: a record spans two at most; its reader reads ~32 ahead
LONGEST_RECORD_BYTES = 2 * BLOCK_BYTES - (1 << 16)  # longer ones are refused, naming the line
LF, CR = 10, 13
UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = {b"\xff\xfe": "<u2", b"\xfe\xff": ">u2"}


@dataclass(frozen=True)
class CsvLayout:
    """What a file looks like, from its first records: how to read it, and what its output copies."""

    bom: bytes  # the byte order mark the file starts with (empty: none)
    encoding: str  # what Arrow decodes the file with (``utf-16`` when a UTF-16 file carries a BOM)
    eol: str  # the header's line ending: "\n", "\r\n" or "\r"
    header: bytes  # the header record as written, without its line ending (an output starts with it)
    quoted: tuple[bool, ...]  # which fields the first data row quotes (those columns are quoted throughout)


_layouts: dict[tuple[object, ...], CsvLayout] = {}
_checked: set[tuple[object, ...]] = set()


def _identity(path: Path, dialect: CsvDialect) -> tuple[tuple[object, ...], int]:
    """What a file is for the caches (path, dialect, inode, size, time), and its size."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    if stat.st_size == 0:
        raise InputError("the file is empty; a CSV extract needs a header row", path=path, line=1)
    return (str(path), dialect, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns), stat.st_size


def csv_layout(path: Path, dialect: CsvDialect) -> CsvLayout:
    """The BOM, encoding, header and line ending of ``path``, read from its first records (cached)."""
    identity, size = _identity(path, dialect)
    if identity not in _layouts:
        with path.open("rb") as handle:
            prefix = b""
            while True:
                prefix += handle.read(max(_PREFIX_BYTES, len(prefix)))
                layout = _layout(path, prefix, dialect, whole=len(prefix) >= size)
                if layout is not None:
                    break
        if len(_layouts) > 64:
            _layouts.clear()
        _layouts[identity] = layout
    return _layouts[identity]


def check_csv(path: Path, dialect: CsvDialect) -> None:
    """Check every quote of ``path`` (RFC 4180) and, in UTF-8, every byte (Arrow checks only the columns
    it converts); raise :class:`InputError` naming line and column (cached)."""
    identity, size = _identity(path, dialect)
    if identity in _checked:
        return
    layout = csv_layout(path, dialect)
    dtype = _dtype(layout, dialect)
    if (size - len(layout.bom)) % np.dtype(dtype).itemsize:
        raise InputError("the file ends in half a character; is it really UTF-16?", path=path)
    bom, width = len(layout.bom), np.dtype(dtype).itemsize
    refused: InputError | None = None
    not_utf8: tuple[int, int] | None = None
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as raw:
        units = np.frombuffer(raw, dtype=dtype, offset=bom)
        try:
            _check_quotes(
                path, units, ord(dialect.delimiter), ord(dialect.quote), lambda unit: _release(raw, bom + unit * width)
            )
        except InputError as exc:  # its frames hold views of the map, which cannot close while they live
            refused = exc.with_traceback(None)
        del units
        if refused is None and dialect.utf8:
            not_utf8 = _piece_not_utf8(raw, bom)
    if refused is not None:
        raise refused
    if not_utf8 is not None:
        _refuse_not_utf8(path, bom, *not_utf8)
    if len(_checked) > 64:
        _checked.clear()
    _checked.add(identity)


def _release(raw: mmap.mmap, end: int) -> None:
    """Drop the map's pages before byte ``end`` from this process once checked: a whole file's map would
    otherwise count in its memory, beside the reader's (they stay in the page cache, read again if needed)."""
    end -= end % mmap.PAGESIZE
    if end > 0:
        raw.madvise(mmap.MADV_DONTNEED, 0, end)


def _piece_not_utf8(raw: mmap.mmap, bom: int) -> tuple[int, int] | None:
    """The first piece (start, end) of the file after its BOM that is not UTF-8, or None. Arrow checks the
    bytes where they are mapped (no copy), in pieces never cut inside a character, each released once done."""
    whole = pa.py_buffer(raw)
    offset = bom
    while offset < whole.size:
        end = min(whole.size, offset + _CHUNK_UNITS)
        if end < whole.size:  # back to a character's first byte (a continuation byte is 10xxxxxx)
            starts = np.flatnonzero((np.frombuffer(whole.slice(end - 3, 4), dtype=np.uint8) & 0xC0) != 0x80)
            end += int(starts[-1]) - 3 if starts.size else 0
        offsets = pa.py_buffer(np.array([0, end - offset], dtype=np.int32))
        try:
            pa.StringArray.from_buffers(1, offsets, whole.slice(offset, end - offset)).validate(full=True)
        except pa.ArrowInvalid:
            return offset, end
        _release(raw, end)
        offset = end
    return None


def _refuse_not_utf8(path: Path, bom: int, offset: int, end: int) -> None:
    with path.open("rb") as handle:
        handle.seek(offset)
        piece = handle.read(end - offset)
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError as exc:
        with path.open("rb") as handle:
            handle.seek(bom)
            before = np.frombuffer(handle.read(offset - bom) + piece[: exc.start], dtype=np.uint8)
        raise InputError(
            "this line is not utf-8 text; declare the file's encoding in the spec (csv: {encoding: cp1252})",
            path=path,
            line=_line_at(before, len(before)),
        ) from None


def long_record_line(path: Path, dialect: CsvDialect) -> int | None:
    """The line where the first record longer than Arrow reads starts (errors only: a slower exact scan)."""
    layout = csv_layout(path, dialect)
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as raw:
        units = np.frombuffer(raw, dtype=_dtype(layout, dialect), offset=len(layout.bom))
        line = _first_long_record(units, ord(dialect.quote))
        del units  # the map cannot close while a view of it lives
    return line


def other_line_end(path: Path, dialect: CsvDialect) -> int | None:
    """The first line whose ending (outside quotes) is not the header's: LF, CRLF and a lone CR mixed in
    one file (None: one kind throughout). A reader that takes the first ending for the whole file (Spark's)
    misreads such a file; the file engine reads it. Chunk by chunk, so memory stays bounded."""
    layout = csv_layout(path, dialect)
    eol = {"\n": 0, "\r\n": 1, "\r": 2}[layout.eol]
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as raw:
        units = np.frombuffer(raw, dtype=_dtype(layout, dialect), offset=len(layout.bom))
        line = _other_line_end(units, ord(dialect.quote), eol)
        del units  # the map cannot close while a view of it lives
    return line


def _other_line_end(units: np.ndarray, quote: int, eol: int) -> int | None:
    n, opened = len(units), 0
    for start in range(0, n, _CHUNK_UNITS):
        chunk = units[start : start + _CHUNK_UNITS]
        quotes = np.flatnonzero(chunk == quote)
        breaks = np.flatnonzero((chunk == LF) | (chunk == CR))
        breaks = breaks[(np.searchsorted(quotes, breaks) + opened) % 2 == 0] + start  # outside quotes
        opened += quotes.size
        if not breaks.size:
            continue
        after = units[np.minimum(breaks + 1, n - 1)]
        before = units[np.maximum(breaks - 1, 0)]
        is_cr = units[breaks] == CR
        kinds = np.where(is_cr, np.where((breaks + 1 < n) & (after == LF), 1, 2), 0)
        crlf_tail = ~is_cr & (breaks > 0) & (before == CR)  # an LF after a CR ends that CRLF, not a line
        other = breaks[~crlf_tail & (kinds != eol)]
        if other.size:
            return _line_at(units, int(other[0]))
    return None


def _first_long_record(units: np.ndarray, quote: int) -> int | None:
    quotes = np.flatnonzero(units == quote)
    breaks = np.flatnonzero((units == LF) | (units == CR))
    ends = np.concatenate(([-1], breaks[np.searchsorted(quotes, breaks) % 2 == 0], [len(units)]))
    longer = np.flatnonzero(np.diff(ends) * units.dtype.itemsize >= LONGEST_RECORD_BYTES)
    return _line_at(units, int(ends[longer[0]]) + 1) if longer.size else None


def _dtype(layout: CsvLayout, dialect: CsvDialect) -> str:
    if not dialect.utf16:
        return "u1"
    return "<u2" if layout.bom == b"\xff\xfe" or dialect.encoding == "utf-16-le" else ">u2"


def _layout(path: Path, prefix: bytes, dialect: CsvDialect, *, whole: bool) -> CsvLayout | None:
    """The layout read from ``prefix``, or None when the header and first row do not end within it."""
    bom, dtype, encoding = _bom(path, prefix[:3], dialect)
    width = np.dtype(dtype).itemsize
    body = prefix[len(bom) :]
    if whole and len(body) % width:
        raise InputError("the file ends in half a character; is it really UTF-16?", path=path)
    units = np.frombuffer(body[: len(body) // width * width], dtype=dtype)
    quote, delimiter = ord(dialect.quote), ord(dialect.delimiter)
    quotes = np.flatnonzero(units == quote)
    breaks = np.flatnonzero((units == LF) | (units == CR))
    breaks = breaks[np.searchsorted(quotes, breaks) % 2 == 0]  # line ends outside quotes
    ends = [int(b) for b in breaks if not (units[b] == LF and b and units[b - 1] == CR)][:2]  # a CRLF: at its CR
    if len(ends) < 2 and not whole:
        return None
    header_end = ends[0] if ends else len(units)
    eol = _eol(units, header_end)
    start = header_end + len(eol)
    stop = ends[1] if len(ends) > 1 else len(units)
    quoted = _quoted_fields(units[start:stop], delimiter, quote) if stop > start else ()
    return CsvLayout(bom, encoding, eol, bytes(body[: header_end * width]), quoted)


def _bom(path: Path, start: bytes, dialect: CsvDialect) -> tuple[bytes, str, str]:
    """The BOM, the code unit type and Arrow's decoding for ``dialect``; a BOM of another encoding is refused."""
    utf16 = next((bom for bom in UTF16_BOMS if start.startswith(bom)), b"")
    if dialect.utf16:
        order = {"utf-16-le": "<u2", "utf-16-be": ">u2"}.get(dialect.encoding)
        if utf16:
            if order is not None and UTF16_BOMS[utf16] != order:
                raise InputError(f"the file's byte order mark is not {dialect.encoding}'s", path=path, line=1)
            return utf16, UTF16_BOMS[utf16], "utf-16"
        if order is None:
            raise InputError(
                "the file has no UTF-16 byte order mark: declare encoding utf-16-le or utf-16-be", path=path, line=1
            )
        return b"", order, dialect.encoding
    if utf16 and dialect.utf8:
        raise InputError(
            "the file is UTF-16 text (it starts with a UTF-16 byte order mark): declare csv: {encoding: utf-16}",
            path=path,
            line=1,
        )
    bom = UTF8_BOM if dialect.utf8 and start.startswith(UTF8_BOM) else b""
    return bom, "u1", "utf-8" if dialect.utf8 else dialect.encoding


def _check_quotes(
    path: Path, units: np.ndarray, delimiter: int, quote: int, checked: Callable[[int], None] = lambda unit: None
) -> None:
    """Every quote opens a field (after a delimiter, a line end or the start, or as the second of a doubled
    pair), or closes one (before a delimiter, a line end, the end, or a quote: the pair); none stays open.

    Which quotes open is known from their parity alone, so only the quotes' neighbours are looked at.
    ``checked`` is told each unit the check has passed (the pages before it may be released).
    """
    n = len(units)
    edge = np.zeros(1 << (8 * units.dtype.itemsize), dtype=bool)
    edge[[delimiter, LF, CR, quote]] = True
    opened = 0  # quotes seen so far (their parity says whether a field is open)
    last_open = -1
    for start in range(0, n, _CHUNK_UNITS):
        checked(start)
        quotes = np.flatnonzero(units[start : start + _CHUNK_UNITS] == quote)
        if not quotes.size:
            continue
        quotes += start
        opens, closes = (quotes[0::2], quotes[1::2]) if opened % 2 == 0 else (quotes[1::2], quotes[0::2])
        bad_open = opens[(opens > 0) & ~edge[units[np.maximum(opens - 1, 0)]]]
        bad_close = closes[(closes < n - 1) & ~edge[units[np.minimum(closes + 1, n - 1)]]]
        if bad_open.size or bad_close.size:
            at = min(int(bad[0]) for bad in (bad_open, bad_close) if bad.size)
            raise _quote_error(path, units, at, delimiter, quote)
        if opens.size:
            last_open = int(opens[-1])
        opened += quotes.size
    if opened % 2:
        raise InputError(
            "a quoted value starting on this line is never closed; add the closing quote",
            path=path,
            line=_line_at(units, last_open),
        )


def _quote_error(path: Path, units: np.ndarray, at: int, delimiter: int, quote: int) -> InputError:
    """Name the line and column (by position: a header cell may be data) of a misplaced quote."""
    breaks = np.flatnonzero((units[:at] == LF) | (units[:at] == CR))
    line = units[int(breaks[-1]) + 1 if breaks.size else 0 : at]
    quotes, delimiters = np.flatnonzero(line == quote), np.flatnonzero(line == delimiter)
    column = int(np.count_nonzero(np.searchsorted(quotes, delimiters) % 2 == 0)) + 1
    return InputError(
        "a quote inside a field that does not start with one, or text after a closing quote: "
        "quote the whole field and double any quote inside it (RFC 4180)",
        path=path,
        line=_line_at(units, at),
        field=f"column {column}",
    )


def _line_at(units: np.ndarray, at: int) -> int:
    """The line (as an editor counts them: LF, CRLF or a lone CR ends one) holding code unit ``at``."""
    head, following = units[:at], units[1 : at + 1]
    if len(following) < len(head):
        following = np.append(following, 0)
    return int(np.count_nonzero(head == LF) + np.count_nonzero((head == CR) & (following != LF))) + 1


def _eol(units: np.ndarray, end: int) -> str:
    if end >= len(units) or units[end] == LF:
        return "\n"
    return "\r\n" if end + 1 < len(units) and units[end + 1] == LF else "\r"


def _quoted_fields(record: np.ndarray, delimiter: int, quote: int) -> tuple[bool, ...]:
    """Which fields of one record start with a quote: writers quote every field, text fields, or only
    those that need it, and an output does as its input did, column by column."""
    quotes = np.flatnonzero(record == quote)
    delimiters = np.flatnonzero(record == delimiter)
    outside = delimiters[np.searchsorted(quotes, delimiters) % 2 == 0]
    starts = np.concatenate(([0], outside + 1))
    return tuple(bool(start < len(record) and record[start] == quote) for start in starts.tolist())
