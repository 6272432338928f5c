"""Normalise and validate NHS numbers, vectorised over Arrow and NumPy arrays.

Extracts carry NHS numbers as text with spaces or dashes, as integers, or as floats (Excel and pandas
turn a column with one blank into float64). Every value is classified as valid, missing, malformed or
failing the modulus 11 check digit. Nothing is guessed: scientific notation, fractions and values that
lost digits (fewer than ten) are malformed. Only whole-array operations run per row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from optout.errors import InputError

LOWEST = 1_000_000_000  # an integer below this lost a leading digit (or zero): never guessed
HIGHEST = 9_999_999_999
PLACEHOLDER_STEP = 1_111_111_111  # 0000000000, 1111111111 ... 9999999999

NULL_TOKENS = ("", "null", "none", "nan", "na", "n/a", "nil", "-", "unknown", "not known")
_CLEAN_PATTERN = r"[\s\-]"
_TEN_DIGITS = r"^[0-9]{10}$"
_TEN_DIGITS_POINT_ZERO = r"^[0-9]{10}\.0+$"


class Status(IntEnum):
    """Why a value is or is not a usable NHS number (stored as uint8)."""

    VALID = 0
    MISSING = 1
    MALFORMED = 2
    BAD_CHECK_DIGIT = 3


@dataclass(frozen=True)
class Normalised:
    """``numbers`` (int64, 0 unless valid) and ``status`` (uint8 :class:`Status`) per input value."""

    numbers: np.ndarray
    status: np.ndarray

    def __len__(self) -> int:
        return len(self.numbers)

    @property
    def valid(self) -> np.ndarray:
        return self.status == Status.VALID

    def counts(self) -> dict[str, int]:
        """How many values fall in each status, keyed by lower-case status name."""
        found = np.bincount(self.status, minlength=len(Status))
        return {status.name.lower(): int(found[status]) for status in Status}


def _residues(weights: tuple[int, ...]) -> np.ndarray:
    """Weighted digit sum, modulo 11, of every five-digit group 00000..99999 for the given weights."""
    groups = np.arange(100_000)
    total = sum(groups // 10 ** (4 - place) % 10 * weight for place, weight in enumerate(weights))
    return (total % 11).astype(np.uint8)


# Weights 10..1 over all ten digits: two table look-ups replace a division per digit.
_HIGH_RESIDUE, _LOW_RESIDUE = _residues((10, 9, 8, 7, 6)), _residues((5, 4, 3, 2, 1))


def check_digit_ok(numbers: np.ndarray) -> np.ndarray:
    """True where a number, read as ten digits (leading zeros included), has the right check digit.

    The rule (weights 10..2 on the first nine digits, check digit 11 - sum mod 11, 11 meaning 0 and 10
    never valid) is the same as: the digits weighted 10..1 sum to a multiple of 11.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    inside = numbers.view(np.uint64) <= HIGHEST  # negatives wrap around to huge values
    every = bool(inside.all())
    digits = numbers if every else np.where(inside, numbers, 0)
    high = digits // 100_000
    low = high * 100_000  # the steps below work in place and leave the input alone
    np.subtract(digits, low, out=low)
    total = _HIGH_RESIDUE.take(high)
    total += _LOW_RESIDUE.take(low)
    ok = total == 0
    ok |= total == 11  # two residues sum to 0..20
    if not every:
        ok &= inside
    return ok


def is_valid_number(numbers: np.ndarray) -> np.ndarray:
    """True where an int64 is a valid NHS number as ten digits (range, not a placeholder, check digit)."""
    numbers = np.asarray(numbers, dtype=np.int64)
    in_range = (numbers > 0) & (numbers <= HIGHEST) & (numbers % PLACEHOLDER_STEP != 0)
    return in_range & check_digit_ok(numbers)  # which reads out-of-range values as failing


def _from_integers(values: np.ndarray, null: np.ndarray) -> Normalised:
    numbers = values.astype(np.int64, copy=True)
    in_range = (numbers >= LOWEST) & (numbers <= HIGHEST) & ~null
    return _finish(numbers, null, in_range)


def _from_floats(values: np.ndarray) -> Normalised:
    null = np.isnan(values)
    whole = ~null & (np.floor(values) == values) & (values >= LOWEST) & (values <= HIGHEST)
    numbers = np.where(whole, values, 0).astype(np.int64)
    return _finish(numbers, null, whole)


def _from_strings(values: pa.Array) -> Normalised:
    """Text numbers: the common shapes at the speed of the bytes, the full rules only for the rest.

    A value whose bytes are ten ASCII digits besides spaces and dashes (plain, spaced 3-3-4, dashed, padded
    with spaces) is read straight from Arrow's data buffer with NumPy: its status and number are the full
    rules' (nothing else in it could be trimmed, be a null word or be cut). Every other value (nulls,
    blanks, tabs, ``.0``, wrong lengths, letters) goes through :func:`_by_full_rules`, as before.
    """
    if pa.types.is_string_view(values.type):
        values = values.cast(pa.large_string())
    raw, bounds = _bytes_of(values)
    digit = raw - 48 < 10  # bytes below '0' wrap around to large
    # Bytes other than digits are few (a spaced number has two): count them where they are.
    others = np.flatnonzero(~digit)
    row_of = np.searchsorted(bounds, others, side="right") - 1
    counts = np.diff(bounds) - np.bincount(row_of, minlength=len(values))  # digits per row
    fast = counts == 10
    byte = raw[others]
    fast[row_of[(byte != 32) & (byte != 45)]] = False  # any byte but digits, spaces and dashes: full rules
    if values.null_count:
        fast &= values.is_valid().to_numpy(zero_copy_only=False)
    numbers = np.zeros(len(values), dtype=np.int64)
    if fast.any():
        starts = np.cumsum(counts) - counts  # where each row's digits begin once the others are dropped
        numbers[fast] = _value_of(raw[digit], starts[fast])
    found = _finish(numbers, np.zeros(len(values), dtype=bool), fast)
    rest = np.flatnonzero(~fast)
    if len(rest):
        slow = _by_full_rules(values.take(pa.array(rest)))
        found.numbers[rest] = slow.numbers
        found.status[rest] = slow.status
    return found


def _bytes_of(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A (large) string array's data bytes, from its first value's start, and each row's bounds in them."""
    wide = pa.types.is_large_string(values.type)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64 if wide else np.int32)
    offsets = offsets[values.offset : values.offset + len(values) + 1]
    data = values.buffers()[2]
    if data is None or not len(values):
        return np.zeros(0, dtype=np.uint8), np.zeros(len(values) + 1, dtype=np.int64)
    raw = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]
    return raw, offsets - offsets[0]


def _value_of(digits: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The int64 value of the ten ASCII digits at each start, eight at a time in one 64-bit word.

    Each word is read where its digits start (an unaligned view, no copy); adjacent digits are combined
    pairwise, then their pairs, then their fours, with one multiply-add per step over the whole array.
    """
    digits = np.ascontiguousarray(digits)
    eights = np.ndarray(shape=(len(digits) - 7,), dtype="<u8", buffer=digits, strides=(1,))[starts]
    twos = np.ndarray(shape=(len(digits) - 1,), dtype="<u2", buffer=digits, strides=(1,))[starts + 8]
    eights -= np.uint64(0x3030303030303030)
    for shift, scale, mask in ((8, 10, 0x00FF00FF00FF00FF), (16, 100, 0x0000FFFF0000FFFF), (32, 10_000, 0xFFFFFFFF)):
        high = eights >> np.uint64(shift)
        eights *= np.uint64(scale)
        eights += high
        eights &= np.uint64(mask)
    twos -= np.uint16(0x3030)
    value = eights.view(np.int64)
    value *= 100
    value += (twos & 0xFF) * 10
    value += twos >> 8
    return value


def _by_full_rules(values: pa.Array) -> Normalised:
    """The whole rule set: Unicode blanks trimmed, null words, any blank or dash dropped, ``.0`` cut."""
    values = pc.utf8_trim_whitespace(values.cast(pa.large_string()))
    null = pc.or_kleene(values.is_null(), pc.is_in(pc.utf8_lower(values), pa.array(NULL_TOKENS)))
    tidy = pc.fill_null(pc.match_substring_regex(values, _TEN_DIGITS), False)
    if not pc.all(pc.or_(tidy, null)).as_py():
        # Messy values are rare: clean only those, then put them back in place.
        messy = np.flatnonzero(~(tidy.to_numpy(zero_copy_only=False) | null.to_numpy(zero_copy_only=False)))
        cleaned = pc.replace_substring_regex(values.take(pa.array(messy)), _CLEAN_PATTERN, "")
        point_zero = pc.match_substring_regex(cleaned, _TEN_DIGITS_POINT_ZERO)
        cleaned = pc.if_else(point_zero, pc.utf8_slice_codeunits(cleaned, 0, 10), cleaned)
        values = _scatter(values, messy, cleaned)
        tidy = pc.fill_null(pc.match_substring_regex(values, _TEN_DIGITS), False)
    digits = pc.if_else(tidy, values, "0").cast(pa.int64())
    null_np = null.to_numpy(zero_copy_only=False)
    tidy_np = tidy.to_numpy(zero_copy_only=False)
    numbers = digits.to_numpy(zero_copy_only=False).astype(np.int64, copy=True)
    # Text keeps its leading zeros, so any ten digits are well formed (an integer 0123... lost one).
    return _finish(numbers, null_np, tidy_np & ~null_np)


def _scatter(values: pa.Array, positions: np.ndarray, replacements: pa.Array) -> pa.Array:
    as_list = values.to_numpy(zero_copy_only=False).astype(object)
    as_list[positions] = replacements.to_numpy(zero_copy_only=False)
    return pa.array(as_list, type=pa.large_string())


def _finish(numbers: np.ndarray, null: np.ndarray, well_formed: np.ndarray) -> Normalised:
    status = np.full(len(numbers), Status.MALFORMED, dtype=np.uint8)
    # One digit ten times (0000000000, 9999999999...) is how systems write "not known".
    placeholder = well_formed & (numbers % PLACEHOLDER_STEP == 0)
    status[null | placeholder] = Status.MISSING
    checkable = well_formed & ~placeholder
    digit_ok = check_digit_ok(numbers)
    status[checkable & digit_ok] = Status.VALID
    status[checkable & ~digit_ok] = Status.BAD_CHECK_DIGIT
    numbers = np.where(status == Status.VALID, numbers, 0)
    return Normalised(numbers=numbers, status=status)


def can_hold(kind: pa.DataType) -> bool:
    """Whether a column of this Arrow type can hold NHS numbers (text or numbers); a date or a flag never can."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return (
        pa.types.is_null(kind)
        or pa.types.is_integer(kind)
        or (pa.types.is_floating(kind) and kind.bit_width == 64)  # a float32 rounds ten digits: not the number
        or pa.types.is_decimal(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_string_view(kind)
    )


def require_number_column(kind: pa.DataType, *, path: Any, column: str) -> None:
    """Refuse a column whose type cannot hold NHS numbers: the spec or the cohort names the wrong column."""
    if not can_hold(kind):
        raise InputError(
            f"the column has type {kind}; NHS numbers are text or whole numbers: is this the right column?",
            path=path,
            field=column,
        )


def normalise(values: Any) -> Normalised:
    """Classify and normalise a column of NHS numbers of any common type.

    Accepts a pyarrow Array or ChunkedArray, a NumPy array, a pandas Series or any iterable.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if not isinstance(values, pa.Array):
        values = _to_arrow(values)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    kind = values.type
    if pa.types.is_null(kind):
        return Normalised(np.zeros(len(values), np.int64), np.full(len(values), Status.MISSING, np.uint8))
    if pa.types.is_integer(kind):
        null = values.is_null().to_numpy(zero_copy_only=False)
        return _from_integers(values.fill_null(0).to_numpy(zero_copy_only=False), null)
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return _from_floats(values.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return _from_strings(values)
    # Dates, booleans, binary...: whatever is present cannot be an NHS number.
    null = values.is_null().to_numpy(zero_copy_only=False)
    return _finish(np.zeros(len(values), np.int64), null, np.zeros(len(values), bool))


def _to_arrow(values: Any) -> pa.Array:
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        # Mixed Python objects (ints beside strings): fall back to their text, blanks stay null.
        return pa.array([_as_text(v) for v in _iterate(values)], type=pa.large_string())


def _iterate(values: Any) -> Iterable[Any]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def _as_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e16 else repr(value)
    return str(value)


def is_valid(value: Any) -> bool:
    """One value: True when it normalises to a valid NHS number."""
    return bool(normalise([value]).status[0] == Status.VALID)


def names_for_message(names: Iterable[str]) -> str:
    """Column names for an error message, leaving out any that could be a value from the data (a header row
    that is really data: an NHS number, a person's name): a message never shows a value from the data."""
    names = list(names)
    shown = [name for name in names if shown_as_name(name)]
    hidden = len(names) - len(shown)
    if not hidden:
        return ", ".join(shown)
    note = f"{hidden} column(s) whose names look like data (is the first row data, not a header?)"
    return f"{', '.join(shown)} and {note}" if shown else note


_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")


def shown_as_name(name: str) -> bool:
    """Whether a header cell may be shown in a message: it looks like a column name (a letter or ``_``
    first, then letters, digits, ``_``, ``.``, ``-``; no spaces) and could not be an NHS number. Free
    text, a person's full name or a number are shown by position instead. A single word that is really a
    value (a surname) still passes: nothing can tell it from a name."""
    return bool(_COLUMN_NAME.fullmatch(name)) and not is_valid(name)


def to_text(numbers: np.ndarray) -> pa.Array:
    """Ten-digit zero-padded text for valid numbers, as the national service's files carry them."""
    return pc.utf8_lpad(pa.array(np.asarray(numbers, dtype=np.int64)).cast(pa.string()), 10, "0")


def synthetic(count: int, start: int = 999_000_000) -> np.ndarray:
    """The first ``count`` valid numbers from a nine-digit prefix on: 999... is never issued to a person.

    For synthetic data (demo, tests, benchmarks) that can contain no real person's number.
    """
    prefixes = np.arange(start, start + count * 2 + 20, dtype=np.int64)
    candidates = (prefixes[:, None] * 10 + np.arange(10)).ravel()
    valid = candidates[is_valid_number(candidates)]
    if len(valid) < count:
        raise ValueError(f"only {len(valid)} test-range numbers from prefix {start}")
    return valid[:count]
