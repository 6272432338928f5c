"""File formats of NHS England's "Check for National Data Opt-outs" service (MESH workflow SPINE_NTT_UPHOLDING).

The request is a ``.dat`` file: one ten-digit NHS number per line followed by a comma, LF endings, no
header. The service rejects a whole file for one invalid number, so only valid, de-duplicated numbers
are written. The reply lists the numbers that may be used, in the same layout; before it, the service
sends a small JSON "job created" acknowledgement that must never be read as the list.

Replies can be gigabytes: they are read in blocks and each block is parsed with whole-array NumPy
operations. Errors name the line, never its content (it may be an NHS number).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from optout.atomic import atomic_file
from optout.errors import InputError
from optout.nhs_number import is_valid_number

BLOCK_SIZE = 8 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"
_DIGITS = 10
_NEWLINE, _CR, _COMMA, _ZERO, _NINE = (ord(c) for c in "\n\r,09")
_LONGEST_LINE = 64  # a good line is 10 digits, a comma and CR LF

Source = str | Path | bytes | bytearray | memoryview | BinaryIO


def sorted_unique(numbers: np.ndarray) -> np.ndarray:
    """``np.unique`` for int64, which in NumPy 2.4 is some thirty times slower than sort + mask."""
    return _drop_repeats(np.sort(numbers))


def _drop_repeats(ordered: np.ndarray) -> np.ndarray:
    """Each value of an already sorted array once."""
    keep = np.empty(len(ordered), dtype=bool)
    keep[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def build_request(numbers: np.ndarray) -> bytes:
    """The request file's bytes: the numbers sorted and de-duplicated, ``0123456789,`` per line.

    Sorting makes the bytes, and so their sha256, a function of the cohort alone: the store finds a
    request again by that hash. For a large cohort use :func:`write_request`, which never holds the
    whole file in memory.
    """
    return b"".join(iter_request(numbers))


def iter_request(numbers: np.ndarray, *, block: int = 1 << 20) -> Iterator[bytes]:
    """The request file in pieces of ``block`` lines (12 MiB for a million numbers)."""
    unique = sorted_unique(np.asarray(numbers, dtype=np.int64))
    if not len(unique):
        raise InputError("the cohort has no valid NHS numbers; there is nothing to check")
    invalid = int((~is_valid_number(unique)).sum())
    if invalid:
        raise InputError(
            f"{invalid} value(s) are not valid NHS numbers; the service would reject the whole file. "
            "Normalise the cohort first (optout.cohort.read_cohort keeps only valid numbers)"
        )
    for start in range(0, len(unique), block):
        yield _lines(unique[start : start + block])


def _lines(unique: np.ndarray) -> bytes:
    lines = np.empty((len(unique), _DIGITS + 2), dtype=np.uint8)
    # Two five-digit halves in int32: several times faster than ten int64 divisions.
    for first, half in ((0, (unique // 100_000).astype(np.int32)), (5, (unique % 100_000).astype(np.int32))):
        for column in range(first + 4, first - 1, -1):
            lines[:, column] = half % 10 + _ZERO
            half //= 10
    lines[:, _DIGITS] = _COMMA
    lines[:, _DIGITS + 1] = _NEWLINE
    return lines.tobytes()


def request_sha256(numbers: np.ndarray) -> str:
    """The sha256 (hex) of the request file for these numbers, without writing it or holding it whole."""
    digest = hashlib.sha256()
    for piece in iter_request(numbers):
        digest.update(piece)
    return digest.hexdigest()


def write_request(path: str | Path, numbers: np.ndarray) -> str:
    """Write the request file atomically (owner-only), piece by piece; return the sha256 (hex) of its bytes."""
    digest = hashlib.sha256()
    with atomic_file(path, "wb") as handle:
        for piece in iter_request(numbers):
            handle.write(piece)  # type: ignore[attr-defined]
            digest.update(piece)
    return digest.hexdigest()


def read_request(path: str | Path) -> np.ndarray:
    """Read back a request file written by :func:`write_request`: sorted unique int64.

    Strict: exactly ``ten digits, comma, LF`` per line, valid numbers, no duplicates. A file that
    differs was not written by us and is refused rather than guessed at.
    """
    with open(path, "rb") as handle:
        numbers = _concat([block for _, block in _parse(handle, name=str(path), strict=True)])
    unique = sorted_unique(numbers)
    if len(unique) != len(numbers):
        raise InputError("the request repeats a number; the service needs each number once", path=path)
    if not len(unique):
        raise InputError("the request file is empty", path=path)
    return unique


def parse_reply(source: Source, requested: np.ndarray, *, name: str | None = None) -> np.ndarray:
    """The cleared numbers of a reply: sorted unique int64, all of them in ``requested``.

    ``source`` is a path, the bytes, or a binary file object; it is read in blocks. Accepts LF or CRLF,
    a trailing comma or none, a UTF-8 byte order mark and blank lines at the very end only. A number
    repeated is kept once. Any other line, or a number that was not requested, raises
    :class:`InputError` naming the line: nothing is returned unless the whole reply is good.
    """
    requested = sorted_unique(np.asarray(requested, dtype=np.int64))
    if isinstance(source, (str, Path)):
        with open(source, "rb") as handle:
            return _parse_reply(handle, requested, name if name is not None else str(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _parse_reply(io.BytesIO(source), requested, name)
    return _parse_reply(source, requested, name)


def is_job_created(data: bytes) -> bool:
    """True for the service's JSON "job created" acknowledgement, which comes before the real reply."""
    return data.removeprefix(_BOM).lstrip().startswith(b"{")


def _parse_reply(stream: BinaryIO, requested: np.ndarray, name: str | None) -> np.ndarray:
    blocks = []
    for first_line, numbers in _parse(stream, name=name, strict=False):
        # Sorted queries keep the binary search in cache: ten times faster than in file order.
        ordered = np.sort(numbers)
        at = np.minimum(np.searchsorted(requested, ordered), max(len(requested) - 1, 0))
        known = requested[at] == ordered if len(requested) else np.zeros(len(ordered), bool)
        if not known.all():
            unknown = ordered[np.argmin(known)]
            bad = int(np.argmax(numbers == unknown))
            # Requested numbers are all valid, so only an unknown one can fail the check digit.
            problem = "a number that was not in the request"
            if not is_valid_number(numbers[bad : bad + 1])[0]:
                problem = "not a valid NHS number (check digit), and not in the request"
            raise InputError(problem, path=name, line=first_line + bad)
        blocks.append(_drop_repeats(ordered))
        if sum(map(len, blocks)) > 2 * len(requested):  # repeated numbers: keep memory to the request's size
            blocks = [sorted_unique(_concat(blocks))]
    return sorted_unique(_concat(blocks))


def _concat(blocks: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(blocks) if blocks else np.empty(0, dtype=np.int64)


def _parse(stream: BinaryIO, *, name: str | None, strict: bool) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(line number of the block's first number, numbers)`` block by block.

    Blank lines are tolerated (non-strict) only when nothing but blank lines follows them.
    """
    carry = b""
    line_no = 1  # number of the next line to parse
    first_blank: int | None = None
    first = True
    while True:
        if len(carry) > _LONGEST_LINE:  # a line without an end would otherwise be gathered whole
            raise InputError("a line far longer than ten digits and a comma", path=name, line=line_no)
        chunk = stream.read(BLOCK_SIZE)
        if first:
            if is_job_created(chunk[:1024]):
                raise InputError(
                    "this is the service's JSON 'job created' acknowledgement, not the reply; wait for the reply file",
                    path=name,
                    line=1,
                )
            if chunk.startswith(_BOM) and not strict:
                chunk = chunk[len(_BOM) :]
            first = False
        if not chunk:
            if not carry:
                break
            if strict:
                raise InputError("the last line does not end with a line feed", path=name, line=line_no)
            data, carry = carry + b"\n", b""
        else:
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            data, carry = data[:cut], data[cut:]
            if not data:
                continue
        buf = np.frombuffer(data, dtype=np.uint8)
        ends = np.flatnonzero(buf == _NEWLINE)
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        numbers, blank = _parse_lines(buf, starts, ends, name=name, first_line=line_no, strict=strict)
        if first_blank is not None and (blank is None or not blank.all()):
            raise InputError("a blank line before the end of the file", path=name, line=first_blank)
        if blank is not None:
            at = int(np.argmax(blank))
            if not blank[at:].all():
                raise InputError("a blank line before the end of the file", path=name, line=line_no + at)
            first_blank = first_blank or line_no + at
            numbers = numbers[:at]
        if len(numbers):
            yield line_no, numbers
        line_no += len(ends)


def _parse_lines(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, *, name: str | None, first_line: int, strict: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Numbers of complete lines ``buf[start:end]`` (``end`` is the LF); a blank-line mask if any are blank."""
    stop = ends.copy()
    blank = None
    if not strict:
        stop -= (stop > starts) & (buf[np.maximum(stop - 1, 0)] == _CR)
        empty = stop == starts
        if empty.any():
            blank = empty
    has_comma = (stop > starts) & (buf[np.maximum(stop - 1, 0)] == _COMMA)
    stop -= has_comma
    width_ok = stop - starts == _DIGITS
    ok = width_ok & has_comma if strict else width_ok.copy()
    if blank is not None:
        ok |= blank
    safe = np.where(width_ok, starts, 0)
    numbers = np.zeros(len(starts), dtype=np.int64)
    for offset in range(_DIGITS):
        digit = buf[np.minimum(safe + offset, len(buf) - 1)].astype(np.int64) - _ZERO
        ok &= ~width_ok | ((digit >= 0) & (digit <= 9))
        numbers = numbers * 10 + digit
    if not ok.all():
        bad = int(np.argmin(ok))
        expected = "ten digits followed by a comma" if strict else "ten digits, optionally followed by a comma"
        raise InputError(f"not a line of {expected}", path=name, line=first_line + bad)
    if strict:
        valid = is_valid_number(numbers)
        if not valid.all():
            raise InputError("not a valid NHS number (check digit)", path=name, line=first_line + int(np.argmin(valid)))
    return numbers, blank
