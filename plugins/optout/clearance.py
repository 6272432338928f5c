"""Why a row may not be used: one reason code per row of an NHS number column (0 = keep).

Built once per run from one check result. About 95% of rows carry a cleared number, so the raw
integers are looked up in the cleared set first and only the rest are normalised and classified;
nothing is rebuilt per batch.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from optout.lookup import NumberSet
from optout.nhs_number import HIGHEST, LOWEST, Status, normalise

KEEP = 0


class Reason(StrEnum):
    """Why a row was removed; ``code`` is its number in a reason-code array, in priority order.

    When one person has several reasons the lowest code names them (``opted_out`` first).
    """

    OPTED_OUT = "opted_out"
    UNCHECKED = "unchecked"
    BAD_CHECK_DIGIT = "bad_check_digit"
    MALFORMED = "malformed"
    MISSING = "missing"
    PERSON_REMOVED = "person_removed"

    @property
    def code(self) -> int:
        return REASONS.index(self) + 1

    @classmethod
    def of_code(cls, code: int) -> Reason:
        return REASONS[code - 1]


REASONS: tuple[Reason, ...] = tuple(Reason)
CODE_COUNT = len(REASONS) + 1  # KEEP plus one per reason
_FROM_STATUS = np.zeros(len(Status), dtype=np.uint8)
_FROM_STATUS[Status.MISSING] = Reason.MISSING.code
_FROM_STATUS[Status.MALFORMED] = Reason.MALFORMED.code
_FROM_STATUS[Status.BAD_CHECK_DIGIT] = Reason.BAD_CHECK_DIGIT.code
_KEEP_UNUSABLE = np.zeros(len(Status), dtype=np.uint8)  # no_nhs_number_disproportionate: such rows pass


class CheckResultLike(Protocol):
    """What filtering needs of ``optout.store.CheckResult``."""

    @property
    def cleared_set(self) -> NumberSet: ...

    @property
    def cohort_set(self) -> NumberSet: ...

    @property
    def info(self) -> Any: ...


def count_codes(codes: np.ndarray) -> np.ndarray:
    """How many rows carry each code (index = code), as int64 of length :data:`CODE_COUNT`."""
    removed = codes[codes != KEEP]  # few: counting only these is several times faster
    counts = np.bincount(removed, minlength=CODE_COUNT).astype(np.int64)
    counts[KEEP] = len(codes) - len(removed)
    return counts


def counts_by_reason(counts: np.ndarray) -> dict[str, int]:
    """A code-count array as ``{reason: count}`` with every reason present."""
    return {reason.value: int(counts[reason.code]) for reason in REASONS}


def no_removals() -> dict[str, int]:
    """Every reason with a count of zero (an unfiltered extract)."""
    return counts_by_reason(np.zeros(CODE_COUNT, dtype=np.int64))


class Clearance:
    """Per-row reason codes for NHS number columns, against one check result."""

    def __init__(self, check_result: CheckResultLike) -> None:
        self._check = check_result  # its lookups are built on first use: a pseudonymised-only spec needs none
        # An exemption for rows without a usable number (optout.exemptions) keeps them instead.
        self._from_status = _KEEP_UNUSABLE if getattr(check_result, "keeps_unusable", False) else _FROM_STATUS

    @property
    def _cleared(self) -> NumberSet:
        return self._check.cleared_set

    @property
    def _cohort(self) -> NumberSet:
        return self._check.cohort_set

    def codes(self, values: Any) -> np.ndarray:
        """uint8 reason code per value (0 = cleared, keep); accepts any column ``normalise`` accepts."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if isinstance(values, pa.Array) and pa.types.is_integer(values.type):
            filled = values if values.null_count == 0 else values.fill_null(0)
            raw = filled.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            # Integers below LOWEST lost a leading digit: never cleared, even if the prefix matches.
            fast = self._cleared.contains(raw) & (raw >= LOWEST) & (raw <= HIGHEST)
            codes = np.zeros(len(raw), dtype=np.uint8)
            rest = np.flatnonzero(~fast)
            if len(rest):
                codes[rest] = self._classify(values.take(pa.array(rest)))
            return codes
        return self._classify(values)

    def _classify(self, values: Any) -> np.ndarray:
        found = normalise(values)
        codes = self._from_status[found.status]
        valid = np.flatnonzero(found.valid)
        numbers = found.numbers[valid]
        cleared = self._cleared.contains(numbers, known_valid=True)
        in_cohort = self._cohort.contains(numbers, known_valid=True)
        codes[valid] = np.where(cleared, KEEP, np.where(in_cohort, Reason.OPTED_OUT.code, Reason.UNCHECKED.code))
        return codes

    def numbers(self, values: Any) -> np.ndarray:
        """Normalised int64 numbers (0 where not valid), for counting distinct people."""
        return normalise(values).numbers
