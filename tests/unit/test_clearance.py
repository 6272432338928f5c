"""Reason codes per row: the fast path on cleared integers agrees with full classification."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from filter_data import BAD_DIGIT, N, check_result
from hypothesis import given
from hypothesis import strategies as st

from optout.clearance import KEEP, Clearance, Reason, count_codes, counts_by_reason

CLEARANCE = Clearance(check_result())


def _reasons(codes: np.ndarray) -> list[str]:
    return ["keep" if code == KEEP else Reason.of_code(int(code)).value for code in codes]


def test_every_reason_from_text() -> None:
    values = [str(N[0]), f"{N[1]} ", str(N[6]), str(N[8]), "", "NULL", "12345", str(BAD_DIGIT), None]
    assert _reasons(CLEARANCE.codes(values)) == [
        "keep",
        "keep",
        "opted_out",
        "unchecked",
        "missing",
        "missing",
        "malformed",
        "bad_check_digit",
        "missing",
    ]


def test_integer_fast_path_matches_text() -> None:
    numbers = [int(N[0]), int(N[6]), int(N[8]), BAD_DIGIT, None, int(N[0]) // 10, -5, 0]
    as_ints = CLEARANCE.codes(pa.array(numbers, pa.int64()))
    as_text = CLEARANCE.codes([None if n is None else str(n) for n in numbers])
    assert _reasons(as_ints) == ["keep", "opted_out", "unchecked", "bad_check_digit", "missing"] + ["malformed"] * 3
    assert np.array_equal(as_ints[:5], as_text[:5])


def test_floats_and_pandas() -> None:
    series = pd.Series([float(N[0]), np.nan, float(N[6]), 1.5])
    assert _reasons(CLEARANCE.codes(series)) == ["keep", "missing", "opted_out", "malformed"]


@given(st.lists(st.sampled_from([*map(int, N), BAD_DIGIT, 1, 10**10 + 1]), max_size=50))
def test_any_integers_agree_with_classification(numbers: list[int]) -> None:
    column = pa.array(numbers, pa.int64())
    assert np.array_equal(CLEARANCE.codes(column), CLEARANCE.codes([str(n) for n in numbers]))


def test_counts() -> None:
    codes = CLEARANCE.codes([str(N[0]), str(N[6]), str(N[6]), ""])
    assert counts_by_reason(count_codes(codes)) == {
        "opted_out": 2,
        "unchecked": 0,
        "bad_check_digit": 0,
        "malformed": 0,
        "missing": 1,
        "person_removed": 0,
    }
    assert [Reason.of_code(r.code) for r in Reason] == list(Reason)
