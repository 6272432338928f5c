"""NHS number normalisation: every shape a real extract carries, classified without guessing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optout.nhs_number import Status, check_digit_ok, is_valid, normalise, to_text

VALID = "9434765919"  # a test-range style number with a correct check digit


def _with_check_digit(body: int) -> int | None:
    digits = [int(d) for d in f"{body:09d}"]
    remainder = sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
    check = 11 - remainder
    if check == 10:
        return None
    return body * 10 + (0 if check == 11 else check)


valid_numbers = (
    st.integers(min_value=100_000_000, max_value=999_999_998)
    .map(_with_check_digit)
    .filter(lambda n: n is not None and n % 1_111_111_111 != 0)
)


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("9434765919", Status.VALID),
        ("943 476 5919", Status.VALID),
        ("943-476-5919", Status.VALID),
        ("\t 9434765919 \n", Status.VALID),
        ("9434765919.0", Status.VALID),
        (9434765919, Status.VALID),
        (9434765919.0, Status.VALID),
        ("9434765918", Status.BAD_CHECK_DIGIT),
        ("", Status.MISSING),
        ("  ", Status.MISSING),
        (None, Status.MISSING),
        ("NULL", Status.MISSING),
        ("n/a", Status.MISSING),
        ("0000000000", Status.MISSING),
        ("9999999999", Status.MISSING),
        ("9.434765919E+09", Status.MALFORMED),
        ("943476591", Status.MALFORMED),
        ("94347659190", Status.MALFORMED),
        ("943476591X", Status.MALFORMED),
        (943476591, Status.MALFORMED),  # lost a digit: never guessed
        (9434765919.5, Status.MALFORMED),
        (-9434765919, Status.MALFORMED),
    ],
)
def test_each_shape_is_classified(value: object, status: Status) -> None:
    assert normalise([value]).status[0] == status


def test_check_digit_of_ten_is_never_valid() -> None:
    # 123456789 weighs to a remainder that needs check digit 10: no number with this body is valid.
    body = next(b for b in range(100_000_000, 100_001_000) if _with_check_digit(b) is None)
    assert not check_digit_ok(np.arange(body * 10, body * 10 + 10)).any()


@given(valid_numbers)
def test_every_written_form_of_a_valid_number_agrees(number: int) -> None:
    text = f"{number:010d}"
    forms = [text, f"{text[:3]} {text[3:6]} {text[6:]}", f"{text[:3]}-{text[3:6]}-{text[6:]}", f" {text}\t", number]
    result = normalise(forms)
    assert (result.status == Status.VALID).all()
    assert (result.numbers == number).all()


@given(valid_numbers, st.integers(min_value=1, max_value=9))
def test_changing_the_check_digit_invalidates(number: int, delta: int) -> None:
    wrong = number - number % 10 + (number % 10 + delta) % 10
    assert normalise([f"{wrong:010d}"]).status[0] == Status.BAD_CHECK_DIGIT


@given(st.text(max_size=14))
def test_any_text_gets_a_status_and_valid_means_ten_digits(text: str) -> None:
    result = normalise(pa.array([text], pa.string()))
    if result.status[0] == Status.VALID:
        assert 0 < result.numbers[0] <= 9_999_999_999
        assert is_valid(f"{result.numbers[0]:010d}")
    else:
        assert result.numbers[0] == 0


def test_arrow_types_and_counts() -> None:
    assert normalise(pa.array([9434765919, None], pa.int64())).counts() == {
        "valid": 1,
        "missing": 1,
        "malformed": 0,
        "bad_check_digit": 0,
    }
    chunked = pa.chunked_array([pa.array([VALID]), pa.array(["junk"])])
    assert list(normalise(chunked).status) == [Status.VALID, Status.MALFORMED]
    dictionary = pa.array([VALID, VALID]).dictionary_encode()
    assert (normalise(dictionary).status == Status.VALID).all()
    assert list(normalise(pa.array([True, None])).status) == [Status.MALFORMED, Status.MISSING]


def test_mixed_python_objects() -> None:
    result = normalise(np.array([9434765919, "943 476 5919", None, float("nan")], dtype=object))
    assert list(result.status) == [Status.VALID, Status.VALID, Status.MISSING, Status.MISSING]


def test_to_text_pads() -> None:
    assert to_text(np.array([123456788], dtype=np.int64)).to_pylist() == ["0123456788"]


_SHAPE_PARTS = st.sampled_from(["0", "1", "4", "9", " ", "-", "\t", "\n", ".", "0.0", "\u00a0", "\u2003", "x", "N/A"])


@settings(deadline=None)  # a loaded shared machine, not the code, sets the pace
@given(
    st.lists(
        st.one_of(
            st.lists(_SHAPE_PARTS, max_size=16).map("".join),
            valid_numbers.map(lambda n: f"{n:010d}"),
            valid_numbers.map(lambda n: f" {n:010d}"[:4] + " " + f"{n:010d}"[3:6] + "-" + f"{n:010d}"[6:] + " "),
            st.none(),
        ),
        max_size=40,
    ),
    st.sampled_from([pa.string(), pa.large_string(), pa.string_view()]),
    st.integers(min_value=0, max_value=3),
)
def test_fast_path_answers_as_the_full_rules(values: list[str | None], kind: pa.DataType, skip: int) -> None:
    """The byte-level fast path for common shapes gives every value the full rules' status and number."""
    from optout.nhs_number import _by_full_rules

    column = pa.array(values, type=kind).slice(min(skip, len(values)))  # sliced: a non-zero offset
    fast, full = normalise(column), _by_full_rules(column.cast(pa.large_string()))
    assert list(fast.status) == list(full.status)
    assert list(fast.numbers) == list(full.numbers)
