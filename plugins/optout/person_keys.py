"""Person keys: how they compare (:class:`KeyKind`) and sets of them grown batch by batch (:class:`KeySet`).

The cascade notes every key seen beside an uncleared number (and, when a table carries only keys, every
key seen at all) across tables far larger than memory. Its sets must therefore cost what the keys'
range costs, not what the rows cost: dense integer keys (the usual surrogate IDs) are one bit each,
10 M people in 1.2 MiB, however many rows repeat them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from enum import StrEnum
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from optout.lookup import bits_at

_BITMAP_KEYS_PER_KEY = 64  # a key bitmap may spend up to 8 bytes per key, a sorted int64 array's cost
# ...and at least 32 MiB, whatever the keys: a set's first batch says little of how many keys will follow (one
# reason's people are a few in a million rows), and only the pages its keys fall in become resident.
_BITMAP_MIN_BITS = 1 << 28
_BITMAP_WINDOW_BITS = 1 << 26  # a key bitmap is built 64 Mi keys (64 MiB of scratch) at a time
_COUNT_WINDOW_BITS = 1 << 23  # keys of a bitmap unpacked at a time (at most 8 Mi keys, 64 MiB)
_SPARSE_ADD = 256  # keys added one by one when fewer than one per this many bits of their range
_COMPACT_AT = 1 << 23  # keys kept as values are de-duplicated whenever this many (or as many again) wait
# Text that is exactly one integer's decimal form (no sign, no leading zero, within int64): such text and the
# integer stand for each other one to one, so it is held as that integer.
_DECIMAL = r"^(0|[1-9][0-9]{0,17})$"


class KeyKind(StrEnum):
    """Keys compare as integers when every key column is an integer column, else as trimmed text."""

    INTEGER = "integer"
    TEXT = "text"

    @classmethod
    def of(cls, types: Iterable[pa.DataType]) -> KeyKind:
        return cls.INTEGER if all(pa.types.is_integer(kind) for kind in types) else cls.TEXT

    def column(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Keys in their comparable form; blank text becomes null (no key)."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if self is KeyKind.INTEGER:
            return values.cast(pa.int64())
        text = pc.utf8_trim_whitespace(values.cast(pa.string()))
        return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)


class KeySet:
    """Exact membership of person keys, added batch by batch (repeats and nulls allowed) and probed per batch.

    Integer keys are held as a bitmap over their range, grown as batches arrive, while the range stays
    dense (at most :data:`_BITMAP_KEYS_PER_KEY` bits per key): adding is a scatter, probing a gather and a
    shift. Text keys that are plain decimal integers (a CSV file's IDs) are held the same way, in a set
    of their own; keys too sparse for a bitmap, and other text, are kept as distinct values
    (de-duplicated whenever as many again wait, so repeats cost at most double) and probed through a
    hash index (a pandas Index) built on the first probe after an add.
    """

    def __init__(self, chunks: Iterable[pa.Array] = (), kind: KeyKind = KeyKind.INTEGER) -> None:
        self.kind = kind
        self._low = 0  # the key of bit 0, a multiple of 8
        self._bits: np.ndarray | None = np.zeros(0, dtype=np.uint8) if kind is KeyKind.INTEGER else None
        self._values: list[pa.Array] = []  # when there is no bitmap: distinct keys first, then those waiting
        self._waiting = 0
        self._index: Any = None
        self._decimal = KeySet(kind=KeyKind.INTEGER) if kind is KeyKind.TEXT else None
        for chunk in chunks:
            self.add(chunk)

    def add(self, keys: pa.Array) -> None:
        """Note ``keys`` (in their :meth:`KeyKind.column` form); nulls are no key."""
        keys = keys.drop_null() if keys.null_count else keys
        if self._decimal is not None:
            decimal = decimal_text(keys)
            self._decimal.add(keys.filter(decimal).cast(pa.int64()))
            keys = keys.filter(pc.invert(decimal))
        if not len(keys):
            return
        self._index = None
        if self._bits is not None:
            values = keys.to_numpy()
            if self._cover(int(values.min()), int(values.max()), len(values)):
                self._set(values - self._low)
                return
            self._values = [self._held_keys()]  # too sparse: the keys so far become values
            self._bits = None
        self._values.append(keys)
        self._waiting += len(keys)
        if self._waiting >= max(_COMPACT_AT, len(self._values[0])):
            self._values = [unique_keys(self._values, self.kind)]
            self._waiting = 0

    def contains(self, keys: pa.Array) -> np.ndarray:
        """Bool mask; a null key is never a member."""
        if self._decimal is not None:
            decimal = decimal_text(keys).fill_null(False)
            found = np.zeros(len(keys), dtype=bool)
            where = decimal.to_numpy(zero_copy_only=False)
            found[where] = self._decimal.contains(keys.filter(decimal).cast(pa.int64()))
            found[~where] = self._contains(keys.filter(pc.invert(decimal)))
            return found
        return self._contains(keys)

    def __len__(self) -> int:
        """How many distinct keys are held."""
        held = int(np.bitwise_count(self._bits).sum()) if self._bits is not None else len(self.distinct())
        return held + (len(self._decimal) if self._decimal is not None else 0)

    def distinct(self) -> pa.Array:
        """The keys held, each once (of a text set: those that are not an integer's decimal form)."""
        if self._bits is not None:
            return self._held_keys()
        if len(self._values) != 1 or self._waiting:
            self._values = [unique_keys(self._values, self.kind)]
            self._waiting = 0
        return self._values[0]

    def _contains(self, keys: pa.Array) -> np.ndarray:
        if len(keys) == 0 or self._empty:
            return np.zeros(len(keys), dtype=bool)
        values = to_numpy(keys)
        if self._bits is None:
            return (self._hash_index().get_indexer(values) >= 0) & present(keys)
        offsets = values - self._low
        inside = offsets.view(np.uint64) < len(self._bits) * 8  # below the range wraps around to huge
        if keys.null_count:
            inside &= present(keys)
        return bits_at(self._bits, offsets, inside)

    def count_outside(self, others: Sequence[KeySet]) -> int:
        """How many keys of this set no set of ``others`` (of the same kind) holds: people counted once.

        The keys are unpacked a window at a time, so the scratch stays small however many there are.
        """
        count = 0
        if self._decimal is not None:  # decimal text is held apart, as integers, in every text set alike
            count = self._decimal.count_outside([other._decimal for other in others if other._decimal is not None])
        for keys in self._held_chunks():
            fresh = np.ones(len(keys), dtype=bool)
            for other in others:
                fresh &= ~other._contains(keys)
            count += int(np.count_nonzero(fresh))
        return count

    def _held_chunks(self) -> Iterator[pa.Array]:
        """Every key held (each once), in arrays of at most a window's keys."""
        if self._bits is None:
            if self._values:
                self._values = [unique_keys(self._values, self.kind)]
                self._waiting = 0
                yield self._values[0]
            return
        step = _COUNT_WINDOW_BITS // 8
        for start in range(0, len(self._bits), step):
            found = np.flatnonzero(np.unpackbits(self._bits[start : start + step], bitorder="little"))
            yield pa.array(found + (self._low + start * 8))

    @property
    def _empty(self) -> bool:
        return not len(self._bits) if self._bits is not None else not self._values

    def _hash_index(self) -> Any:
        index = self._index
        if index is None:
            import pandas as pd

            index = self._index = pd.Index(self.distinct().to_numpy(zero_copy_only=False))
        return index

    def _cover(self, low: int, high: int, count: int) -> bool:
        """Grow the bitmap to hold keys ``low..high``; False when the range would be too sparse for one.

        A grown bitmap gets a quarter of its span spare on the side it grew, so keys that rise batch by
        batch (a file sorted by key) grow it a few times, not once a batch.
        """
        assert self._bits is not None
        held_low, held_high = self._low, self._low + len(self._bits) * 8 - 1
        if len(self._bits) and held_low <= low and high <= held_high:
            return True
        if len(self._bits):
            low, high = min(low, held_low), max(high, held_high)
            count += int(np.bitwise_count(self._bits).sum())
        span = high - low + 1
        if span > max(_BITMAP_KEYS_PER_KEY * count, _BITMAP_MIN_BITS):
            return False
        spare = span // 4
        new_low = (low - (spare if len(self._bits) and low < held_low else 0)) // 8 * 8
        new_high = high + (spare if not len(self._bits) or high > held_high else 0)
        bits = np.zeros((new_high - new_low) // 8 + 1, dtype=np.uint8)
        if len(self._bits):
            start = (held_low - new_low) // 8
            bits[start : start + len(self._bits)] = self._bits
        self._bits, self._low = bits, new_low
        return True

    def _set(self, offsets: np.ndarray) -> None:
        """Set the bits at ``offsets`` (inside the bitmap), building only the bytes they fall in.

        Few keys over a wide range (one reason's people in a batch) are OR-ed in one by one: a scratch
        bitmap of their range would cost more to clear and pack than they cost to set.
        """
        assert self._bits is not None
        first = int(offsets.min()) // 8
        offsets -= first * 8
        span = int(offsets.max()) + 1
        if len(offsets) * _SPARSE_ADD < span:
            np.bitwise_or.at(self._bits, (offsets >> 3) + first, (1 << (offsets & 7)).astype(np.uint8))
            return
        part = bitmap(offsets, span)
        self._bits[first : first + len(part)] |= part

    def _held_keys(self) -> pa.Array:
        """The keys of the bitmap, as values."""
        found = [chunk.to_numpy() for chunk in self._held_chunks()]
        return pa.array(np.concatenate(found) if found else np.zeros(0, dtype=np.int64))


def bitmap(offsets: np.ndarray, span: int) -> np.ndarray:
    """Bits (little-endian in each byte) set at ``offsets``, which may repeat, all in ``range(span)``.

    A bool per bit is set by scattering, then packed: ten times quicker than OR-ing bits in place one
    offset at a time. The bools are made window by window, so the scratch stays small however wide
    the range.
    """
    bits = np.empty((span + 7) // 8, dtype=np.uint8)
    for start in range(0, span, _BITMAP_WINDOW_BITS):
        stop = min(start + _BITMAP_WINDOW_BITS, span)
        inside = offsets if stop - start == span else offsets[(offsets >= start) & (offsets < stop)] - start
        flags = np.zeros(stop - start, dtype=bool)
        flags[inside] = True
        bits[start // 8 : (stop + 7) // 8] = np.packbits(flags, bitorder="little")
    return bits


def decimal_text(keys: pa.Array) -> pa.Array:
    """Bool array: which text keys are exactly an integer's decimal form (see :data:`_DECIMAL`)."""
    return pc.match_substring_regex(keys, _DECIMAL)


def unique_keys(chunks: list[pa.Array], kind: KeyKind) -> pa.Array:
    """The distinct keys of all ``chunks`` (an empty array of the kind's type when there are none); integers
    by sorting (a hash table of millions of keys costs tens of bytes each, a sort eight; measured, the sort
    takes a seventh of ``pc.unique``'s time on 9M keys of 4M people)."""
    if not chunks:
        return empty_keys(kind)
    if kind is KeyKind.TEXT or any(chunk.null_count for chunk in chunks):
        return pc.unique(pa.concat_arrays(chunks))
    values = np.sort(np.concatenate([chunk.to_numpy() for chunk in chunks]))
    first = np.ones(len(values), dtype=bool)
    first[1:] = values[1:] != values[:-1]
    return pa.array(values[first])


def empty_keys(kind: KeyKind) -> pa.Array:
    return pa.array([], type=pa.int64() if kind is KeyKind.INTEGER else pa.string())


def present(keys: pa.Array) -> np.ndarray:
    """Bool mask of non-null values, unpacked from the validity bitmap (a tenth of the time of
    ``is_valid().to_numpy()``), or all true when there are no nulls."""
    if keys.null_count == 0:
        return np.ones(len(keys), dtype=bool)
    validity = keys.buffers()[0]
    if validity is None:  # nulls without a bitmap (a null-type array): Arrow says which
        return keys.is_valid().to_numpy(zero_copy_only=False)
    bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), count=keys.offset + len(keys), bitorder="little")
    return bits[keys.offset :].view(bool)


def to_numpy(keys: pa.Array) -> np.ndarray:
    if keys.null_count == 0:
        return keys.to_numpy(zero_copy_only=False)
    if pa.types.is_integer(keys.type):
        return keys.fill_null(0).to_numpy(zero_copy_only=False)
    return keys.fill_null("").to_numpy(zero_copy_only=False)
