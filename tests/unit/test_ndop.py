"""Request and reply files of the national opt-out service."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optout import ndop
from optout.errors import InputError


def with_check_digit(prefix: int) -> int | None:
    """The valid NHS number with these nine leading digits, or None when no check digit fits."""
    total = sum(int(d) * w for d, w in zip(f"{prefix:09d}", range(10, 1, -1), strict=True))
    check = (11 - total % 11) % 11
    number = prefix * 10 + check
    return number if check != 10 and ndop.is_valid_number(np.array([number]))[0] else None


valid_number = st.integers(0, 999_999_999).map(with_check_digit).filter(lambda n: n is not None)
VALID = [n for n in (with_check_digit(p) for p in range(400_000_000, 400_000_100)) if n is not None]


def reply_bytes(numbers: list[int], *, ending: str = "\n", comma: bool = True, bom: bool = False) -> bytes:
    text = "".join(f"{n:010d}{',' if comma else ''}{ending}" for n in numbers)
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


@settings(max_examples=60, deadline=None)
@given(
    cohort=st.lists(valid_number, min_size=1, max_size=50),
    keep=st.data(),
    ending=st.sampled_from(["\n", "\r\n"]),
    comma=st.booleans(),
    bom=st.booleans(),
    final_newline=st.booleans(),
)
def test_request_then_reply_round_trip(
    cohort: list[int], keep: st.DataObject, ending: str, comma: bool, bom: bool, final_newline: bool
) -> None:
    request = ndop.build_request(np.array(cohort))
    requested = np.array(sorted(set(cohort)), dtype=np.int64)
    assert request == reply_bytes(requested.tolist())
    cleared = keep.draw(st.lists(st.sampled_from(cohort), max_size=60))  # duplicates and any order
    data = reply_bytes(cleared, ending=ending, comma=comma, bom=bom)
    if not final_newline:
        data = data.removesuffix(ending.encode())
    result = ndop.parse_reply(data, requested)
    assert result.dtype == np.int64
    assert result.tolist() == sorted(set(cleared))


def test_write_request_is_atomic_owner_only_and_hashed(tmp_path: Path) -> None:
    path = tmp_path / "out" / "request.dat"
    digest = ndop.write_request(path, np.array(VALID[::-1] + VALID[:3]))
    data = path.read_bytes()
    assert digest == hashlib.sha256(data).hexdigest()
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert ndop.read_request(path).tolist() == sorted(VALID)


def test_request_keeps_leading_zeros() -> None:
    number = next(n for n in (with_check_digit(p) for p in range(1_234_567, 1_234_600)) if n)
    assert ndop.build_request(np.array([number])) == f"{number:010d},\n".encode()
    assert f"{number:010d}".startswith("00")


@pytest.mark.parametrize("bad", [VALID[0] + 1 if VALID[0] % 10 != 9 else VALID[0] - 1, 1_111_111_111, -5, 0])
def test_request_refuses_invalid_numbers_without_naming_them(bad: int) -> None:
    with pytest.raises(InputError, match="not valid NHS numbers") as caught:
        ndop.build_request(np.array([*VALID, bad]))
    assert str(abs(bad)) not in str(caught.value) or abs(bad) < 10


def test_request_refuses_an_empty_cohort() -> None:
    with pytest.raises(InputError, match="nothing to check"):
        ndop.build_request(np.array([], dtype=np.int64))


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (reply_bytes(VALID[:3], ending="\r\n"), 1),
        (reply_bytes(VALID[:3], comma=False), 1),
        (reply_bytes(VALID[:3]).removesuffix(b"\n"), 3),
        (reply_bytes(VALID[:1]) + b"\n" + reply_bytes(VALID[1:2]), 2),
        (reply_bytes(VALID[:1]) * 2, None),
        (reply_bytes(VALID[:1], bom=True), 1),
    ],
)
def test_read_request_is_strict(tmp_path: Path, content: bytes, line: int | None) -> None:
    path = tmp_path / "request.dat"
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        ndop.read_request(path)
    assert caught.value.line == line
    assert caught.value.path == str(path)
    assert str(VALID[0]) not in str(caught.value)


def test_read_request_refuses_a_bad_check_digit(tmp_path: Path) -> None:
    path = tmp_path / "request.dat"
    path.write_bytes(reply_bytes(VALID[:2]) + b"1234567890,\n")
    with pytest.raises(InputError, match="check digit") as caught:
        ndop.read_request(path)
    assert caught.value.line == 3


BAD_LINES = {
    "blank line in the middle": b"",
    "letters": b"abcdefghij,",
    "nine digits": b"400000001,",
    "eleven digits": b"40000000012,",
    "two numbers": f"{VALID[0]:010d},{VALID[1]:010d},".encode(),
    "two commas": f"{VALID[0]:010d},,".encode(),
    "inner space": f"{VALID[0]:010d} ,".encode(),
    "leading space": f" {VALID[0]:010d},".encode(),
    "comma only": b",",
    "carriage return only inside": f"{VALID[0]:010d}\r,".encode(),
    "header": b"NHS_NUMBER",
}


@pytest.mark.parametrize("bad", list(BAD_LINES.values()), ids=list(BAD_LINES))
def test_any_other_line_names_its_number_never_its_content(bad: bytes) -> None:
    data = reply_bytes(VALID[:3]) + bad + b"\n" + reply_bytes(VALID[3:5])
    with pytest.raises(InputError) as caught:
        ndop.parse_reply(data, np.array(VALID), name="reply.dat")
    assert caught.value.line == 4
    assert caught.value.path == "reply.dat"
    assert "line 4" in str(caught.value)
    for number in VALID[:5]:
        assert f"{number:010d}" not in str(caught.value)


def test_a_number_that_was_not_requested_is_refused() -> None:
    data = reply_bytes([*VALID[:2], VALID[10]])
    with pytest.raises(InputError, match="line 3: a number that was not in the request") as caught:
        ndop.parse_reply(data, np.array(VALID[:5]))
    assert f"{VALID[10]:010d}" not in str(caught.value)


def test_an_invalid_number_is_refused_as_such() -> None:
    data = reply_bytes([VALID[0], 1_234_567_890])
    with pytest.raises(InputError, match="line 2: not a valid NHS number"):
        ndop.parse_reply(data, np.array(VALID))


def test_blank_lines_at_the_very_end_are_tolerated() -> None:
    data = reply_bytes(VALID[:3], ending="\r\n") + b"\r\n\r\n"
    assert ndop.parse_reply(data, np.array(VALID)).tolist() == VALID[:3]


def test_an_empty_reply_clears_nobody() -> None:
    assert ndop.parse_reply(b"", np.array(VALID)).tolist() == []


def test_job_created_acknowledgement_is_never_read_as_the_list() -> None:
    ack = b'\xef\xbb\xbf \n{"jobId": "abc", "status": "created"}'
    assert ndop.is_job_created(ack)
    assert ndop.is_job_created(b'{"a": 1}')
    assert not ndop.is_job_created(reply_bytes(VALID[:2]))
    assert not ndop.is_job_created(b"")
    with pytest.raises(InputError, match="job created"):
        ndop.parse_reply(ack, np.array(VALID))


class CountingReader(io.BytesIO):
    """Records the largest read, to prove the parser streams."""

    largest = 0

    def read(self, size: int | None = -1) -> bytes:
        assert size is not None and size > 0, "the parser must read in blocks"
        self.largest = max(self.largest, size)
        return super().read(size)


def test_large_reply_is_parsed_in_blocks_with_lines_numbered_across_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    candidates = np.arange(4_000_000_000, 4_001_000_000, dtype=np.int64)
    numbers = candidates[ndop.is_valid_number(candidates)].tolist()
    monkeypatch.setattr(ndop, "BLOCK_SIZE", 4099)  # an odd size: lines straddle every block edge
    data = reply_bytes(numbers[::-1], ending="\r\n", bom=True)
    stream = CountingReader(data)
    assert ndop.parse_reply(stream, np.array(numbers)).tolist() == numbers
    assert stream.largest == 4099

    path = tmp_path / "reply.dat"
    lines = data.split(b"\r\n")
    lines[80_000] = b"12345"
    path.write_bytes(b"\r\n".join(lines))
    with pytest.raises(InputError) as caught:
        ndop.parse_reply(path, np.array(numbers))
    assert caught.value.line == 80_001
    assert caught.value.path == str(path)
