"""The store's tables, and how it keeps NHS numbers: sorted, delta encoded, compressed blocks.

A million numbers a row, byte-planed gaps then zlib, so five million numbers write and load in about a
second on SQLite and PostgreSQL alike. New tables of other records go in modules of their own (on
:mod:`optout.db`), not here.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Dialect

CHUNK = 1 << 20
_HEADER = struct.Struct("<qB")  # first number, bytes per delta


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC in and out; SQLite, which has no time zones, stores naive UTC text."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the store takes time-zone aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()


versions_table = sa.Table(
    "optout_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("local_id", sa.String(100), nullable=False, unique=True),
    sa.Column("status", sa.String(12), nullable=False, index=True),
    sa.Column("request_sha256", sa.String(64), nullable=False, index=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("requested_at", UTCDateTime, nullable=False),
    sa.Column("checked_at", UTCDateTime),
    sa.Column("published_at", UTCDateTime),
    sa.Column("cohort_count", sa.BigInteger, nullable=False),
    sa.Column("cleared_count", sa.BigInteger),
    sa.Column("note", sa.Text),
)


numbers_table = sa.Table(
    "optout_numbers",
    metadata,
    sa.Column("version_id", sa.Integer, sa.ForeignKey("optout_versions.id"), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)


def write_numbers(conn: sa.Connection, version_id: int, kind: str, numbers: np.ndarray) -> None:
    """Store sorted unique ``numbers`` as blocks of :data:`CHUNK` numbers each."""
    rows = [
        {"version_id": version_id, "kind": kind, "seq": seq, "count": count, "data": data}
        for seq, (count, data) in enumerate(PackedNumbers.pack(numbers).blocks)
    ]
    if rows:
        conn.execute(numbers_table.insert(), rows)


class PackedNumbers:
    """Sorted unique numbers kept as the store keeps them: blocks of :data:`CHUNK`, a byte or two a number.

    A check result holds its numbers so (a list of tens of millions is hundreds of MB as int64): the
    filter's lookups are built a block at a time, and only a caller that needs the whole array decodes it.
    """

    def __init__(self, blocks: list[tuple[int, bytes]], expected: int) -> None:
        """``blocks``: (count, data) in order; a total other than ``expected`` is refused as damage."""
        if sum(count for count, _ in blocks) != expected:
            raise RuntimeError("the store's numbers are damaged (a version has the wrong count); restore a backup")
        self.blocks = blocks
        self._count = expected

    @classmethod
    def pack(cls, numbers: np.ndarray) -> PackedNumbers:
        numbers = np.asarray(numbers, dtype=np.int64)
        parts = (numbers[start : start + CHUNK] for start in range(0, len(numbers), CHUNK))
        return cls([(len(part), _encode(part)) for part in parts], len(numbers))

    def __len__(self) -> int:
        return self._count

    def parts(self) -> Iterator[np.ndarray]:
        """The numbers, one block at a time."""
        for count, data in self.blocks:
            yield _decode(data, count)

    def numbers(self) -> np.ndarray:
        """Every number, in one array."""
        return np.concatenate(list(self.parts())) if self.blocks else np.empty(0, dtype=np.int64)


def _encode(numbers: np.ndarray) -> bytes:
    """Sorted numbers as their first value and the gaps between them, byte-planed then zlib'd.

    Gaps of a cohort are small (thousands): they fit two bytes and compress well once the high and
    low bytes of all gaps are stored apart.
    """
    gaps = np.diff(numbers)
    top = int(gaps.max()) if len(gaps) else 0
    width = next(w for w in (1, 2, 4, 8) if top < 1 << (8 * w))
    planes = gaps.astype(f"<u{width}").view(np.uint8).reshape(-1, width).T.tobytes()
    return _HEADER.pack(int(numbers[0]), width) + zlib.compress(planes, 1)


def _decode(data: bytes, count: int) -> np.ndarray:
    """One block's numbers; a block of the wrong length is refused as damage."""
    first, width = _HEADER.unpack_from(data)
    planes = np.frombuffer(zlib.decompress(data[_HEADER.size :]), dtype=np.uint8)
    gaps = planes.reshape(width, -1).T.copy().view(f"<u{width}").ravel()
    part = np.empty(len(gaps) + 1, dtype=np.int64)
    part[0] = first
    np.cumsum(gaps, dtype=np.int64, out=part[1:])
    part[1:] += first
    if len(part) != count:
        raise RuntimeError("the store's numbers are damaged (a block has the wrong length); restore a backup")
    return part


def packed_numbers(rows: list[Any], expected: int) -> PackedNumbers:
    """A version's numbers from its block rows (in ``seq`` order), still packed."""
    return PackedNumbers([(row.count, row.data) for row in rows], expected)
