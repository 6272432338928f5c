"""What differs between databases, in one class per database, chosen once per engine.

:class:`Dialect` spells everything in portable SQLAlchemy Core; a database's subclass overrides only
what it does differently or better (a one-call digit test, unlogged scratch tables, a bulk loader,
session settings, its row hash). Adding a database is one subclass and one line in
:mod:`optout.homes.sql.dialects`. Nothing outside this package asks a connection for its dialect name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import sqlalchemy as sa

from optout.errors import InputError
from optout.homes.sql.expressions import TRIM, Kind, strip

INSERT_CHUNK = 50_000


class Dialect:
    """One database's SQL for the filter; every method has a portable default.

    :param name: SQLAlchemy's name for the database (``engine.dialect.name``).
    :param scratch_prefix: how the run's scratch tables are created (``TEMPORARY``: private to the
        session, gone at its end).
    :param indexed_sets: whether the staged sets and the uncleared keys get a primary key (an index
        for lookups); a database that hash-joins them saves the index's build.
    :param text_type: the database's unbounded text type (casts, text keys).
    :param transactional_ddl: whether ``CREATE``/``DROP``/``ALTER`` stay inside the run's transaction (a
        rollback takes them back); where each commits, a failed run drops what it created itself.
    :param one_snapshot: whether every statement of the run's transaction reads one snapshot of the inputs
        (so what learning saw is every row the write pass sees); else each output row is looked up in the
        cleared set itself.
    """

    name: ClassVar[str] = "portable"
    scratch_prefix: ClassVar[str] = "TEMPORARY"
    indexed_sets: ClassVar[bool] = True
    text_type: ClassVar[sa.types.TypeEngine[str]] = sa.Text()
    transactional_ddl: ClassVar[bool] = True
    one_snapshot: ClassVar[bool] = True

    def begin(self, conn: sa.Connection) -> None:
        """Settings for one run's transaction (memory, planner, stable text forms); none by default."""

    def text(self, value: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        """``value`` cast to the database's unbounded text type."""
        return sa.cast(value, self.text_type)

    def trim(self, value: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        """``value`` as text without the leading and trailing spaces Arrow trims."""
        return sa.func.trim(self.text(value), TRIM)

    def substr(self, value: sa.ColumnElement[str], start: int, length: Any) -> sa.ColumnElement[str]:
        """``length`` characters of ``value`` from ``start`` (1 = the first)."""
        return sa.func.substr(value, start, length)

    def to_bigint(self, digits: sa.ColumnElement[str]) -> sa.ColumnElement[int]:
        """Text already checked to be ten digits as a bigint (a database that may evaluate the cast before
        the check uses a cast that gives NULL instead of failing)."""
        return sa.cast(digits, sa.BigInteger)

    def only(self, value: sa.ColumnElement[str], alphabet: str) -> sa.ColumnElement[bool]:
        """True when ``value`` has no character outside ``alphabet`` (the caller checks the length)."""
        return strip(value, alphabet) == ""

    def quotient(self, dividend: sa.ColumnElement[Any], divisor: sa.ColumnElement[Any]) -> sa.ColumnElement[int]:
        """Integer division of two integers (SQLAlchemy's ``//``: ``/`` where integers divide whole)."""
        return dividend // divisor

    def scratch_name(self, name: str) -> str:
        """The name a scratch table is created under (a database may mark temporary tables by name)."""
        return name

    def rename(self, conn: sa.Connection, table: sa.Table, name: str) -> None:
        """Rename ``table`` to ``name`` in its own schema, inside the run's transaction."""
        preparer = conn.dialect.identifier_preparer
        conn.exec_driver_sql(f"ALTER TABLE {preparer.format_table(table)} RENAME TO {preparer.quote(name)}")

    def replace(self, conn: sa.Connection, built: sa.Table, name: str) -> None:
        """Put the new table ``built`` in place of the table ``name`` in its schema (if there is one), inside
        the run's transaction: the commit makes every output appear at once."""
        conn.execute(sa.schema.DropTable(sa.Table(name, sa.MetaData(), schema=built.schema), if_exists=True))
        self.rename(conn, built, name)

    def create_table_as(
        self, query: sa.Select[Any], name: str, schema: str | None = None, *, temporary: bool = False
    ) -> sa.Executable:
        """``CREATE TABLE name AS query`` (one statement, so the database may scan in parallel)."""
        return sa.CreateTableAs(query, name, schema=schema, temporary=temporary)

    def create_scratch_as(self, query: sa.Select[Any], name: str) -> sa.Executable:
        """``CREATE ... TABLE name AS query`` for a scratch table."""
        return self.create_table_as(query, name, temporary=True)

    def load(self, conn: sa.Connection, table: sa.Table, values: np.ndarray) -> None:
        """Bulk-load int64 numbers, or text lines (an (n, width) uint8 array, each ending in a newline),
        into the one column ``n`` of a scratch table: executemany inserts in chunks."""
        numbers = values.ndim == 1
        width = 0 if numbers else values.shape[1] - 1
        text = "" if numbers else values[:, :-1].tobytes().decode("ascii")
        for start in range(0, len(values), INSERT_CHUNK):
            end = min(start + INSERT_CHUNK, len(values))
            chunk = (
                values[start:end].tolist()
                if numbers
                else [text[i * width : (i + 1) * width] for i in range(start, end)]
            )
            conn.execute(table.insert(), [{"n": v} for v in chunk])

    def analyse(self, conn: sa.Connection, table: sa.Table) -> None:
        """Give the planner statistics of a freshly filled scratch table (nothing by default)."""

    @contextlib.contextmanager
    def whole_list_join(self, conn: sa.Connection) -> Iterator[None]:
        """Around the one join against the whole cleared set (settings for it; nothing by default)."""
        yield

    def query_kind(self, type_code: Any) -> Kind:
        """A query column's kind from the driver's type code; text when unknown."""
        return Kind.TEXT

    def row_hash_sum(self, conn: sa.Connection, row: sa.ColumnElement[str]) -> tuple[str, sa.ColumnElement[Any]]:
        """The name of the row hash used and an aggregate: the exact sum of each row text's signed 64-bit
        hash (see :func:`optout.homes.sql.content_hash.content_hash`)."""
        raise InputError(f"content hashes are not implemented for {self.name} databases")

    def columns(self, conn: sa.Connection, name: str, schema: str | None = None) -> dict[str, Kind]:
        """A table's columns in order, with their kinds (SQLAlchemy's reflection by default).

        :raises sqlalchemy.exc.NoSuchTableError: no such table (asked without a failing statement, which
            would spoil the run's transaction on PostgreSQL and DuckDB)."""
        return {c["name"]: Kind.of(c["type"]) for c in sa.inspect(conn).get_columns(name, schema=schema)}

    def table(
        self, conn: sa.Connection, name: str, schema: str | None = None, metadata: sa.MetaData | None = None
    ) -> sa.Table:
        """An existing table with its columns by name (types are not needed: rows are read as text)."""
        columns = [sa.Column(column, sa.types.NullType()) for column in self.columns(conn, name, schema)]
        return sa.Table(name, metadata or sa.MetaData(), *columns, schema=schema)

    def quoted(self, conn: sa.Connection, table: sa.Table) -> str:
        """The table's name as this database quotes it."""
        return conn.dialect.identifier_preparer.format_table(table)
