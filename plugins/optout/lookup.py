"""A set of valid NHS numbers with constant-time, vectorised membership, built once per version.

A valid NHS number is fixed by its first nine digits (the tenth is the check digit), so one bit per
nine-digit prefix holds any set: 10**9 bits, 125 MB of virtual memory of which only the touched pages
become resident. Membership is a gather and a shift, about ten times faster than a hash lookup, and
unlike ``pyarrow.compute.is_in`` nothing is rebuilt per batch.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from optout.nhs_number import check_digit_ok, is_valid_number

_PREFIXES = 10**9
_BUILD_STEP = 1 << 20  # numbers set at a time: a list of tens of millions costs no full-size temporaries


class NumberSet:
    """Membership of valid NHS numbers (int64)."""

    def __init__(self, numbers: np.ndarray) -> None:
        numbers = np.asarray(numbers, dtype=np.int64)
        self._bits = np.zeros(_PREFIXES // 8 + 1, dtype=np.uint8)
        self._size = 0
        self._add_steps(numbers)

    @classmethod
    def of_parts(cls, parts: Iterable[np.ndarray]) -> NumberSet:
        """The set of every part's numbers, built part by part (a packed list is never decoded whole)."""
        found = cls(np.zeros(0, dtype=np.int64))
        for part in parts:
            found._add_steps(part)
        return found

    def _add_steps(self, numbers: np.ndarray) -> None:
        for start in range(0, len(numbers), _BUILD_STEP):
            self._add(numbers[start : start + _BUILD_STEP])

    def _add(self, numbers: np.ndarray) -> None:
        """Set the bits of one step of numbers (any order, repeats allowed; earlier steps' bits are kept)."""
        if not is_valid_number(numbers).all():
            raise ValueError("NumberSet holds valid NHS numbers only")
        prefix = np.sort(numbers // 10)
        prefix = prefix[np.r_[True, prefix[1:] != prefix[:-1]]]
        byte = prefix >> 3
        starts = np.flatnonzero(np.r_[True, byte[1:] != byte[:-1]])
        # Bits within one byte are distinct after de-duplication, so their sum is their union.
        held = self._bits[byte[starts]]
        grown = held | np.add.reduceat((1 << (prefix & 7)).astype(np.uint8), starts)
        self._bits[byte[starts]] = grown
        self._size += int(np.bitwise_count(grown).sum() - np.bitwise_count(held).sum())

    def __len__(self) -> int:
        return self._size

    def contains(self, numbers: np.ndarray, *, known_valid: bool = False) -> np.ndarray:
        """Boolean mask: which numbers are in the set. Invalid numbers are never members.

        ``known_valid`` skips the check-digit test when the caller has already validated them.
        """
        numbers = np.asarray(numbers, dtype=np.int64)
        prefix = numbers // 10
        found = bits_at(self._bits, prefix, prefix.view(np.uint64) < _PREFIXES)  # negatives wrap to huge
        if not known_valid:
            found &= check_digit_ok(numbers)
        return found


def bits_at(bits: np.ndarray, positions: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Whether the bit at each position of a bitmap is set; False where ``inside`` is not.

    ``positions`` (int64) is used up: the steps work in place, since every full-size temporary costs
    fresh pages as well as time.
    """
    if not inside.all():
        positions *= inside  # outside: look up bit 0, then drop
    hit = bits.take(positions >> 3)
    positions &= 7
    hit >>= positions.astype(np.uint8)
    hit &= 1
    found: np.ndarray = hit.view(bool)
    found &= inside
    return found
