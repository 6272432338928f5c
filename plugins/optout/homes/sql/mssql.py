"""SQL Server, Azure SQL and Synapse (SQLAlchemy's ``mssql`` dialect): ``#`` temporary tables,
``SELECT ... INTO``, ``TRIM(chars FROM x)``, ``SUBSTRING``, ``TRY_CAST``, ``LIKE`` character classes for the
digit test, ``sp_rename``, and the first 8 bytes of ``HASHBYTES('MD5', ...)`` as the row hash.

Compiled and checked statement by statement, not run against a server (see the README).
"""

from __future__ import annotations

from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from optout.homes.sql.dialect import Dialect
from optout.homes.sql.expressions import TRIM


class SQLServer(Dialect):
    """T-SQL marks a temporary table by its name (``#t``) and creates one from a query with
    ``SELECT ... INTO`` (SQLAlchemy writes that for ``CREATE TABLE AS``). Text is ``NVARCHAR(max)`` so
    the Unicode spaces the filter trims survive the cast. ``XACT_ABORT`` makes any error roll the whole
    run back, DDL included. Under READ COMMITTED (the default; SNAPSHOT needs a database option) each
    statement reads what is committed when it starts, so every output row is looked up in the cleared
    set."""

    name: ClassVar[str] = "mssql"
    scratch_prefix: ClassVar[str] = ""
    indexed_sets: ClassVar[bool] = False  # NVARCHAR(max) keys cannot be indexed; hash joins need none
    text_type: ClassVar[sa.types.TypeEngine[str]] = sa.NVARCHAR(None)
    one_snapshot: ClassVar[bool] = False

    def create_table_as(
        self, query: sa.Select[Any], name: str, schema: str | None = None, *, temporary: bool = False
    ) -> sa.Executable:
        # SQLAlchemy writes SELECT ... INTO by putting INTO before the first " FROM " (else "\nFROM ") of the
        # query's text: selecting the plain columns of the query as a subquery puts it after them.
        rows = query.subquery("optout_rows")
        return sa.CreateTableAs(sa.select(rows), name, schema=schema, temporary=temporary)

    def begin(self, conn: sa.Connection) -> None:
        conn.exec_driver_sql("SET XACT_ABORT ON")

    def trim(self, value: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        return _TrimFrom(self.text(value), sa.literal(TRIM, sa.NVARCHAR(None)))

    def only(self, value: sa.ColumnElement[str], alphabet: str) -> sa.ColumnElement[bool]:
        return value.op("NOT LIKE")(f"%[^{alphabet}]%")

    def substr(self, value: sa.ColumnElement[str], start: int, length: Any) -> sa.ColumnElement[str]:
        return sa.func.substring(value, start, length)

    def to_bigint(self, digits: sa.ColumnElement[str]) -> sa.ColumnElement[int]:
        return sa.try_cast(digits, sa.BigInteger)

    def scratch_name(self, name: str) -> str:
        return f"#{name}"

    def rename(self, conn: sa.Connection, table: sa.Table, name: str) -> None:
        old = ".".join(part for part in (table.schema, table.name) if part)
        conn.execute(sa.text("EXEC sp_rename :old, :new"), {"old": old, "new": name})

    def row_hash_sum(self, conn: sa.Connection, row: sa.ColumnElement[str]) -> tuple[str, sa.ColumnElement[Any]]:
        # CAST of 8 bytes to BIGINT reads them big-endian and signed: exactly the MD5 prefix.
        prefix = sa.cast(sa.func.substring(sa.func.hashbytes(sa.literal_column("'MD5'"), row), 1, 8), sa.BigInteger)
        return "md5-prefix", sa.func.coalesce(sa.func.sum(sa.cast(prefix, sa.Numeric(38, 0))), 0)


class _TrimFrom(FunctionElement[str]):
    """``TRIM(characters FROM value)``: T-SQL's spelling of a trim of given characters (SQL Server 2017+)."""

    inherit_cache = True
    type = sa.NVARCHAR()


@compiles(_TrimFrom, "mssql")
def _trim_from(element: _TrimFrom, compiler: Any, **kw: Any) -> str:
    value, characters = element.clauses
    # A tab before FROM: SQLAlchemy's SELECT ... INTO looks for the first " FROM " and "\nFROM ".
    return f"TRIM({compiler.process(characters, **kw)}\tFROM {compiler.process(value, **kw)})"
