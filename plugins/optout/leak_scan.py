"""Find NHS numbers wherever an extract holds them: every cell of every column, and a CSV file's raw bytes.

The filter and its counts look at the columns the spec declares, read by the filter's reader; whatever
fools that reader, or sits in a column nobody declared, would fool a proof built the same way. This scan
shares neither: it reads every column, whatever its name or type, and for CSV also the bytes themselves,
and it finds every value that the normaliser would read as a valid NHS number:

- a whole cell as :func:`optout.nhs_number.normalise` reads it (plain, spaced, dashed, ``.0``);
- ten digits, or three-three-four with spaces or dashes, inside longer text (between non-digits);
- whole numbers in integer, floating and decimal columns;
- inside lists, structs and maps, dictionary values, binary, run-end encoded and extension columns.

What is *valid* is decided once, by :func:`optout.nhs_number.is_valid_number`; a found number that is
not in the cleared set of the version used is a leak. Only counts come out (table, column, how many),
never a number. Dates, times, booleans and nulls cannot hold an NHS number (as the normaliser says) and
are skipped; a column of a type it does not know is reported as unscannable, which fails the proof.

Whole columns at a time: the digits of text cells are counted on Arrow's buffers with NumPy, so only
the few cells holding ten digits or more are normalised, and only those the normaliser does not read as
one number are searched further (RE2, in Arrow).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from optout.errors import InputError
from optout.lookup import NumberSet
from optout.nhs_number import HIGHEST, LOWEST, Status, is_valid_number, normalise, shown_as_name

RAW_BYTES = "(raw bytes)"  # the column name under which a CSV file's own bytes are reported
_RAW_BLOCK_BYTES = 8 << 20
_BATCH_ROWS = 1 << 20
_SLICE_ROWS = 1 << 16  # text cells searched at once
_STREAMED: dict[str, Any] = {"pre_buffer": False, "buffer_size": 1 << 20}  # how the scan opens a Parquet file
# Inside longer text: ten digits, or 3-3-4 with spaces or dashes, not part of a longer run of hexadecimal
# digits. A run of ten decimal digits turns up by chance in about one keyed hash, UUID or other hex token in
# three, and one in eleven of those passes the check digit: counting them would fail clean pseudonymised
# extracts at random. So a hex letter next to the digits ends the candidate ("NHS9434765919" is still found,
# "ab9434765919" is not); whole cells are read as the normaliser reads them whatever they hold. Digits on
# either side of a decimal point are a decimal ("0.9434765919", "9434765919.5": a lab value, a float
# written as text), not a number a person reads as an NHS number; a full stop after a word or at the end
# of a sentence is no decimal point ("NHS no. 9434765919.").
_IN_TEXT = (
    r"(?:^|^\.|[^0-9A-Fa-f.]|[^0-9]\.)"
    r"(?P<n>[0-9]{10}|[0-9]{3}[\s\-]{1,3}[0-9]{3}[\s\-]{1,3}[0-9]{4})"
    r"(?:$|\.$|[^0-9A-Fa-f.]|\.[^0-9])"
)
# What the normaliser could read whole as one number: digits, blanks (Unicode ones too: it trims them) and
# dashes, with an optional ``.0``. A necessary shape only; the normaliser decides.
_WHOLE_SHAPE = r"^[\s\pZ\x{85}\-0-9]*(?:\.0+)?[\s\pZ\x{85}]*$"
# What a CSV parser could take as the edge of a field, whatever the dialect: raw text is cut there.
_RAW_EDGES = b",;\t|\"'\r\n"


@dataclass
class WholeCells:
    """The cells of one text column the scan read whole as valid NHS numbers: their rows and numbers. As
    the scan reads them the normaliser does (``folded``: some cells were not ASCII, so the scan read them
    folded first, as the normaliser would not), so the proof counts its cleared rows from this reading
    rather than normalising the column again."""

    rows: list[np.ndarray] = field(default_factory=list)
    numbers: list[np.ndarray] = field(default_factory=list)
    folded: bool = False

    def add(self, rows: np.ndarray, numbers: np.ndarray) -> None:
        self.rows.append(rows)
        self.numbers.append(numbers)

    def all_numbers(self) -> np.ndarray:
        return np.concatenate(self.numbers) if self.numbers else np.zeros(0, dtype=np.int64)


class Unscannable(TypeError):
    """A column of a type the scan cannot read: the proof cannot vouch for it."""


@dataclass(frozen=True)
class ColumnLeak:
    """Uncleared NHS numbers found in one column (``values``: how many, never which)."""

    table: str
    column: str
    values: int
    unscannable: bool = False


@dataclass
class LeakScan:
    """Every uncleared valid NHS number in the batches and files it is given, counted per table and column.

    :param cleared: the cleared set of the version the extract was filtered with.
    :param excluded: ``{table: {column, ...}}`` the spec excludes from the scan, by name, with a reason.
    """

    cleared: NumberSet
    excluded: dict[str, set[str]] = field(default_factory=dict)
    _counts: dict[tuple[str, str], int] = field(default_factory=dict, init=False)
    _unscannable: set[tuple[str, str]] = field(default_factory=set, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def batch(self, table: str, batch: pa.RecordBatch | pa.Table, whole: str | None = None) -> WholeCells | None:
        """Scan every column of one batch of ``table`` (batches may be scanned on several threads at once);
        the cells of column ``whole`` read whole as valid numbers are returned, if it is a text column."""
        skip = self.excluded.get(table, set())
        cells = None
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            if name in skip:
                continue
            key = (table, name)
            try:
                if name == whole and isinstance(column, pa.Array) and _is_text(_value_type(column.type)):
                    cells = WholeCells()
                    found = len(_hits(column, self.cleared, cells))
                else:
                    found = uncleared_values(column, self.cleared)
            except Unscannable:
                with self._lock:
                    self._unscannable.add(key)
                continue
            with self._lock:
                self._counts[key] = self._counts.get(key, 0) + found
        return cells

    def file(self, table: str, path: str | Path, encoding: str = "utf-8", delimiter: str = ",") -> None:
        """Scan a whole file with readers of its own: a Parquet file's every column, a CSV file's bytes and
        every column as text (Arrow's parser in the file's delimiter, quoted newlines allowed: the bytes
        cover what it misreads)."""
        path = Path(path)
        if path.suffix.lower() == ".parquet":
            for batch in parquet_batches(path):
                self.batch(table, batch)
            return
        # The bytes hold an excluded column's numbers too: those its parsed cells hold are excused.
        skip, excused = self.excluded.get(table, set()), 0
        for batch in _csv_batches(path, encoding, delimiter):  # rows it cannot parse are skipped: the bytes hold them
            self.batch(table, batch)
            excused += sum(
                uncleared_values(batch.column(name), self.cleared) for name in skip & set(batch.schema.names)
            )
        self.raw_file(table, path, encoding, excused)

    def raw_file(self, table: str, path: str | Path, encoding: str = "utf-8", excused: int = 0) -> None:
        """Scan a text file's bytes as text cut at anything a parser could take for a field's edge;
        ``excused``: how many of them excluded columns hold."""
        key = (table, RAW_BYTES)
        found = max(0, uncleared_in_raw(path, self.cleared, encoding) - excused)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + found

    def counted(self, leaks: Iterable[ColumnLeak]) -> None:
        """Add counts made where the data lives (a home that scans in place, such as Spark, by this rule);
        the columns this scan excludes are dropped, as :meth:`batch` skips them."""
        for leak in leaks:
            key = (leak.table, leak.column)
            if leak.column in self.excluded.get(leak.table, set()):
                continue
            if leak.unscannable:
                self._unscannable.add(key)
            else:
                self._counts[key] = self._counts.get(key, 0) + leak.values

    def leaks(self) -> list[ColumnLeak]:
        """The columns holding an uncleared number, or that could not be scanned (empty: clean)."""
        found = [ColumnLeak(t, c, n) for (t, c), n in sorted(self._counts.items()) if n]
        return found + [ColumnLeak(t, c, 0, unscannable=True) for t, c in sorted(self._unscannable)]

    def total(self, table: str | None = None) -> int:
        """Uncleared values found (in one table, or all)."""
        return sum(n for (t, _), n in self._counts.items() if table is None or t == table)

    def columns_scanned(self, table: str | None = None) -> int:
        return sum(1 for t, _ in self._counts if table is None or t == table)


def parquet_batches(
    path: str | Path, columns: list[str] | None = None, *, dictionaries: bool = True
) -> Iterator[pa.RecordBatch]:
    """Every column (or ``columns``) of a Parquet file; text whose pages are dictionary-encoded comes as
    dictionaries, so the scan reads each distinct value once (``dictionaries=False``: plain, for a reader of
    every row whose values barely repeat: decoding nearly unique numbers into a dictionary took 4x the
    time of plain text, measured on 10M rows). Column chunks are streamed, not pre-buffered:
    Arrow's pre-buffering holds a row group's every compressed chunk at once, measured 271 MiB against 76
    for a 10M-row output, at no cost in time. A damaged file is an :class:`InputError` naming it."""
    try:
        footer = pq.ParquetFile(path, **_STREAMED)
        text = {f.name for f in footer.schema_arrow if _is_text(f.type) or pa.types.is_binary(f.type)}
        meta = footer.metadata
        encoded = dictionaries and [
            name
            for index in range(meta.num_columns)
            if (name := meta.schema.column(index).path) in text
            and all(meta.row_group(group).column(index).has_dictionary_page for group in range(meta.num_row_groups))
        ]
        parquet = pq.ParquetFile(path, read_dictionary=encoded or None, **_STREAMED) if encoded else footer
        yield from parquet.iter_batches(batch_size=_BATCH_ROWS, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"Parquet file is damaged ({type(exc).__name__})", path=Path(path)) from None


def _csv_batches(path: Path, encoding: str, delimiter: str) -> Iterator[pa.RecordBatch]:
    """Every column of a CSV file as text, its header row too (it may be data), whatever its names."""
    read = pacsv.ReadOptions(encoding=encoding, block_size=16 << 20, autogenerate_column_names=True)
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=lambda row: "skip")
    with pacsv.open_csv(path, read_options=read, parse_options=parse) as first:
        names = first.schema.names
    convert = pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.large_string()), strings_can_be_null=False)
    labels: list[str] | None = None
    for batch in pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert):
        if labels is None and batch.num_rows:
            labels = [_label(column[0].as_py(), index) for index, column in enumerate(batch.columns)]
        yield pa.record_batch(batch.columns, names=labels or names)


def _label(header: str, index: int) -> str:
    """A CSV column's name for a report: its header cell, unless that could be a value (data)."""
    return header if shown_as_name(header) else f"column {index + 1}"


def uncleared_values(values: pa.Array | pa.ChunkedArray, cleared: NumberSet) -> int:
    """How many values of a column (any type, nested or not) are valid NHS numbers not in ``cleared``."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    return sum(len(_hits(chunk, cleared)) for chunk in chunks)


def uncleared_in_raw(path: str | Path, cleared: NumberSet, encoding: str = "utf-8") -> int:
    """How many uncleared valid NHS numbers a text file holds, read as bytes, not as the reader parses it.

    Each block is cut where any common delimiter, quote or line ending sits, and every piece is scanned as
    a cell: a quoting trick that hides records from a CSV reader does not hide them here.
    """
    total = 0
    for text in _raw_blocks(Path(path), encoding):
        pieces = pc.split_pattern_regex(pa.array([text], pa.large_string()), f"[{_edges_class()}]")
        total += len(_text_hits(pieces.flatten(), cleared))
    return total


def _edges_class() -> str:
    return "".join(f"\\x{{{byte:02x}}}" for byte in _RAW_EDGES)


def _raw_blocks(path: Path, encoding: str) -> Iterator[str]:
    """The file's text in blocks, each ending at a field edge so no value is split between two blocks."""
    tail = b""
    with path.open("rb") as handle:
        while block := handle.read(_RAW_BLOCK_BYTES):
            block = tail + block
            cut = max(block.rfind(bytes([edge])) for edge in _RAW_EDGES)
            if cut < 0:
                tail = block
                continue
            tail = block[cut + 1 :]
            yield block[: cut + 1].decode(encoding, errors="replace")
    if tail:
        yield tail.decode(encoding, errors="replace")


def _value_type(kind: pa.DataType) -> pa.DataType:
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _hits(values: pa.Array, cleared: NumberSet, whole: WholeCells | None = None) -> np.ndarray:
    """Positions (into ``values``) of each uncleared valid number found, one entry per number; the cells of
    a text column read whole as valid numbers are added to ``whole`` if given."""
    kind = values.type
    if len(values) == 0 or values.null_count == len(values):
        return _NONE
    if isinstance(kind, pa.BaseExtensionType):
        return _hits(values.storage, cleared)
    if pa.types.is_dictionary(kind):
        entries = WholeCells() if whole is not None else None
        per_entry = np.bincount(_hits(values.dictionary, cleared, entries), minlength=len(values.dictionary))
        indices = values.indices.fill_null(0).to_numpy(zero_copy_only=False)
        present = values.is_valid().to_numpy(zero_copy_only=False)
        if whole is not None and entries is not None:
            whole.folded = entries.folded
            number_of = np.zeros(len(values.dictionary), dtype=np.int64)
            if entries.rows:
                number_of[np.concatenate(entries.rows)] = entries.all_numbers()
            numbers = number_of[indices] * present
            rows = np.flatnonzero(numbers)
            whole.add(rows, numbers[rows])
        if not per_entry.any():
            return _NONE
        counts = per_entry[indices] * present
        used = np.zeros(len(per_entry), dtype=bool)
        used[indices[present]] = True
        # A value no row uses is still in the file (a Parquet dictionary page): it counts, once.
        unused = int(per_entry[~used].sum())
        return np.concatenate([np.repeat(np.arange(len(values)), counts), np.zeros(unused, dtype=np.int64)])
    if pa.types.is_integer(kind):
        return _integer_hits(values, cleared)
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return _float_hits(values, cleared)
    if _is_text(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return _text_hits(values, cleared, whole)
    if pa.types.is_string_view(kind):
        return _text_hits(values.cast(pa.large_string()), cleared)
    if pa.types.is_fixed_size_binary(kind) or pa.types.is_binary_view(kind):
        return _text_hits(values.cast(pa.large_binary()), cleared)
    if pa.types.is_map(kind):  # its own kernels do not all take maps: read it as the list of entries it is
        entries = pa.struct([kind.key_field, kind.item_field])
        return _hits(values.cast(pa.large_list(entries)), cleared)
    if _is_list(kind):
        found = _hits(values.flatten(), cleared)
        return pc.list_parent_indices(values).to_numpy()[found] if len(found) else _NONE
    if pa.types.is_struct(kind):
        return _concat(_hits(child, cleared) for child in values.flatten())
    if pa.types.is_union(kind):
        return _concat(_hits(values.field(index), cleared) for index in range(kind.num_fields))
    if pa.types.is_run_end_encoded(kind):
        return _hits(pc.run_end_decode(values), cleared)
    if _cannot_hold(kind):
        return _NONE
    raise Unscannable(str(kind))


_NONE = np.zeros(0, dtype=np.int64)


def _concat(parts: Iterable[np.ndarray]) -> np.ndarray:
    found = [part for part in parts if len(part)]
    return np.concatenate(found) if found else _NONE


def _is_list(kind: pa.DataType) -> bool:
    return (
        pa.types.is_list(kind)
        or pa.types.is_large_list(kind)
        or pa.types.is_fixed_size_list(kind)
        or pa.types.is_list_view(kind)
        or pa.types.is_large_list_view(kind)
    )


def _cannot_hold(kind: pa.DataType) -> bool:
    """Types the normaliser never reads as a number: dates, times, durations, flags, nothing."""
    return pa.types.is_temporal(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind)


def _uncleared(numbers: np.ndarray, positions: np.ndarray | None, cleared: NumberSet) -> np.ndarray:
    """The positions (``None``: every one) whose int64 number is valid and not cleared.

    A number whose nine-digit prefix is in the cleared set is either that cleared number or fails its
    check digit: neither is a leak, so most values stop at one bitmap probe.
    """
    rest = np.flatnonzero(~cleared.contains(numbers, known_valid=True))
    rest = rest[is_valid_number(numbers[rest])]
    return rest if positions is None else positions[rest]


def _in_range(raw: np.ndarray) -> np.ndarray | None:
    """Positions of the values between the lowest and highest ten-digit number (None: all of them)."""
    inside = raw >= LOWEST  # NaN compares False
    inside &= raw <= HIGHEST
    return None if inside.all() else np.flatnonzero(inside)


def _integer_hits(values: pa.Array, cleared: NumberSet) -> np.ndarray:
    if values.type.bit_width < 32:
        return _NONE  # int8/int16 hold no ten-digit number
    raw = values.fill_null(0).to_numpy(zero_copy_only=False) if values.null_count else values.to_numpy()
    positions = _in_range(raw)
    if positions is None:  # a column of numbers: no copy
        return _uncleared(raw.astype(np.int64, copy=False), None, cleared)
    return _uncleared(raw[positions].astype(np.int64), positions, cleared) if len(positions) else _NONE


def _float_hits(values: pa.Array, cleared: NumberSet) -> np.ndarray:
    if pa.types.is_floating(values.type) and values.type.bit_width < 32:
        return _NONE  # half floats hold no ten-digit number
    if not pa.types.is_float64(values.type):
        values = pc.cast(values, pa.float64(), safe=False)
    raw = values.fill_null(0.0).to_numpy(zero_copy_only=False) if values.null_count else values.to_numpy()
    positions = _in_range(raw)
    if positions is None:
        positions = np.arange(len(raw))
    candidates = raw[positions]
    whole = np.floor(candidates) == candidates
    return _uncleared(candidates[whole].astype(np.int64), positions[whole], cleared)


def _text_hits(
    values: pa.Array, cleared: NumberSet, cells_read: WholeCells | None = None, first: int = 0
) -> np.ndarray:
    """Text or bytes: whole cells as the normaliser reads them; ten-digit runs and 3-3-4 groups in the rest.

    Only cells holding ten digits or more can hold a number: they are counted on the bytes themselves
    (NumPy over Arrow's buffers), and only those few are normalised or searched further. A column with
    any non-ASCII byte is read as a person would read it first (:func:`_as_read`). Long columns go a slice
    at a time: the scratch (a count per byte, the normaliser's) is many bytes per byte of text.
    """
    if len(values) > _SLICE_ROWS:
        return _concat(
            _text_hits(values.slice(start, _SLICE_ROWS), cleared, cells_read, first + start) + start
            for start in range(0, len(values), _SLICE_ROWS)
        )
    if _is_text(values.type):
        read_as = _as_read(values)
        if cells_read is not None and read_as is not values:
            cells_read.folded = True
        values = read_as
    at = _ten_digits_or_more(values)
    if not len(at):
        return _NONE
    cells = values.take(pa.array(at))
    if not _is_text(cells.type):  # bytes in no known encoding: read as UTF-8 would (few cells get here)
        cells = pa.array([None if c is None else c.decode("utf-8", "replace") for c in cells.to_pylist()])
    # Only a cell of digits, blanks and dashes (and ``.0``) can be read whole as one number: the others
    # (decimals, free text) skip the normaliser's slower rules for messy values.
    shaped = pc.fill_null(pc.match_substring_regex(cells, _WHOLE_SHAPE), False).to_numpy(zero_copy_only=False)
    whole = np.flatnonzero(shaped)
    read = normalise(cells.take(pa.array(whole)))
    valid = np.zeros(len(cells), dtype=bool)
    valid[whole[read.status == Status.VALID]] = True
    numbers = read.numbers[read.status == Status.VALID]
    if cells_read is not None:
        cells_read.add(at[valid] + first, numbers)
    found = [_uncleared(numbers, at[valid], cleared)]
    if not valid.all():  # a cell read as one number has no other ten digits in it
        rest = np.flatnonzero(~valid)
        others = cells.take(pa.array(rest))
        rest = rest[_may_match_in_text(others)]  # most long cells (decimals, hashes) have no candidate
        if len(rest):
            found.append(_in_text(cells.take(pa.array(rest)), at[rest], cleared))
    return _concat(found)


def _as_read(values: pa.Array) -> pa.Array:
    """Text as a person reads it: full-width and other compatibility digits folded to ASCII (NFKC), and
    invisible format characters (zero-width spaces and joiners, soft hyphens) dropped, so a number written
    in full-width digits or with a zero-width space inside is still found. Only cells with non-ASCII text change; a
    column of ASCII text (nearly all of them) costs one pass over its bytes."""
    data = values.buffers()[2]
    if data is None or not (np.frombuffer(data, np.uint8) >= 0x80).any():
        return values
    folded = pc.replace_substring_regex(pc.utf8_normalize(values, "NFKC"), r"[\p{Cf}\x{AD}]", "")
    return pc.if_else(pc.string_is_ascii(values), values, folded)


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _ten_digits_or_more(values: pa.Array) -> np.ndarray:
    """Positions of the cells of a (large) string or binary array holding at least ten ASCII digits."""
    large = pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type)
    _, offsets_buffer, data_buffer = values.buffers()[:3]
    every = np.frombuffer(offsets_buffer, np.int64 if large else np.int32)
    offsets = every[values.offset : values.offset + len(values) + 1].astype(np.int64)
    at = np.flatnonzero(np.diff(offsets) >= 10)  # shorter cells cannot hold ten digits
    if not len(at) or data_buffer is None:
        return _NONE
    data = np.frombuffer(data_buffer, np.uint8)
    begin, end = offsets[at], offsets[at + 1]
    digits = np.zeros(int(offsets[-1] - offsets[0]) + 1, np.int32)
    np.less(data[offsets[0] : offsets[-1]] - np.uint8(48), 10, out=digits[1:], casting="unsafe")
    np.cumsum(digits, out=digits)
    many = digits[end - offsets[0]] - digits[begin - offsets[0]] >= 10
    return at[many]


def _may_match_in_text(cells: pa.Array) -> np.ndarray:
    """Per cell of a (large) string array: whether :data:`_IN_TEXT` could match in it at all, from its runs
    of ASCII digits alone. A candidate is a run of exactly ten, or runs of three, three and four; a cell
    with neither (``-0.12345678901234567``, a run of 16) cannot hold one, and skips the regex rounds."""
    large = pa.types.is_large_string(cells.type)
    _, offsets_buffer, data_buffer = cells.buffers()[:3]
    every = np.frombuffer(offsets_buffer, np.int64 if large else np.int32)
    given = every[cells.offset : cells.offset + len(cells) + 1].astype(np.int64)
    if data_buffer is None or not len(cells):
        return np.zeros(len(cells), dtype=bool)
    digit = np.frombuffer(data_buffer, np.uint8)[given[0] : given[-1]] - np.uint8(48) < 10
    offsets = given - given[0]
    starts_cell = np.zeros(len(digit) + 1, dtype=bool)
    starts_cell[offsets] = True  # a run never continues from one cell into the next
    padded = np.concatenate([[False], digit, [False]])
    starts = np.flatnonzero(digit & (~padded[:-2] | starts_cell[:-1]))
    ends = np.flatnonzero(digit & (~padded[2:] | starts_cell[1:]))
    lengths = ends - starts + 1
    cell = np.searchsorted(offsets, starts, side="right") - 1
    has = {n: np.zeros(len(cells), dtype=bool) for n in (3, 4, 10)}
    for n, flags in has.items():
        flags[cell[lengths == n]] = True
    return has[10] | (has[3] & has[4])


def _in_text(cells: pa.Array, positions: np.ndarray, cleared: NumberSet) -> np.ndarray:
    """Every ten-digit candidate inside longer text: each round takes the first one left in every cell."""
    found = []
    while len(cells):
        first = pc.extract_regex(cells, _IN_TEXT)
        matched = first.is_valid()
        cells, positions = cells.filter(matched), positions[matched.to_numpy(zero_copy_only=False)]
        if not len(cells):
            break
        digits = pc.replace_substring_regex(first.filter(matched).field("n"), r"[^0-9]", "")
        numbers = digits.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        found.append(_uncleared(numbers, positions, cleared))
        # The match and the non-digits around it become one non-digit: a neighbour keeps its edge.
        cells = pc.replace_substring_regex(cells, _IN_TEXT, "#", max_replacements=1)
    return _concat(found)
