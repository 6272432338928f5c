"""A table's content as one hash: the manifest's ``sha256`` for a table kept in a database."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

from optout.homes.sql.dialect import Dialect
from optout.homes.sql.dialects import dialect_for
from optout.homes.sql.expressions import row_text

CONTENT_HASH_VERSION = "optout-sql-content/1"


def content_hash(conn: sa.Connection, table: sa.FromClause, dialect: Dialect | None = None) -> tuple[int, str]:
    """Row count and a deterministic, order-independent hash of a table's content.

    Each row is written as text (every column cast to text, NULL as ``\\N``, joined by U+001F) and hashed
    to a signed 64-bit integer; the integers are summed exactly over all rows. The hash is the sha256 of
    ``optout-sql-content/1``, the row hash used, the row count and that sum, one per line. Row order does
    not matter (a database may return rows in any order); a changed, added or removed row changes it.
    The row hash is the database's own (:meth:`~optout.homes.sql.dialect.Dialect.row_hash_sum`), and so
    are text forms: compare hashes within one database engine. ``dialect``: the run's, else the
    connection's.
    """
    dialect = dialect or dialect_for(conn)
    method, total = dialect.row_hash_sum(conn, row_text(dialect, list(table.c)))
    count, summed = conn.execute(sa.select(sa.func.count(), total).select_from(table)).one()
    text = f"{CONTENT_HASH_VERSION}\n{method}\n{int(count)}\n{int(summed or 0)}\n"
    return int(count), hashlib.sha256(text.encode()).hexdigest()
