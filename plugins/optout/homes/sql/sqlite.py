"""SQLite: a one-call digit test (``GLOB``) and, having no hash function of its own, the first 8 bytes of
each row's MD5 summed by an aggregate registered on the connection."""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import sqlalchemy as sa

from optout.homes.sql.dialect import Dialect


class SQLite(Dialect):
    name: ClassVar[str] = "sqlite"

    def only(self, value: sa.ColumnElement[str], alphabet: str) -> sa.ColumnElement[bool]:
        return value.op("NOT GLOB")(f"*[^{alphabet}]*")

    def row_hash_sum(self, conn: sa.Connection, row: sa.ColumnElement[str]) -> tuple[str, sa.ColumnElement[Any]]:
        raw: Any = conn.connection.dbapi_connection
        raw.create_aggregate("optout_md5_sum", 1, _Md5Sum)
        return "md5-prefix", sa.func.optout_md5_sum(row)


class _Md5Sum:
    """SQLite aggregate: exact sum of the signed 64-bit MD5 prefixes (SQLite has no md5)."""

    def __init__(self) -> None:
        self.total = 0

    def step(self, text: str | None) -> None:
        digest = hashlib.md5(str(text).encode(), usedforsecurity=False).digest()
        self.total += int.from_bytes(digest[:8], "big", signed=True)

    def finalize(self) -> str:
        return str(self.total)  # text: the sum may not fit in SQLite's 64-bit integers
