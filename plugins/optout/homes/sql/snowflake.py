"""Snowflake (snowflake-sqlalchemy's ``snowflake`` dialect): ``TRY_CAST``, integer division by exact
arithmetic (its ``/`` is decimal division), renames qualified by schema, and the upper 64 bits of MD5
(``MD5_NUMBER_UPPER64``) as the row hash.

Compiled and checked statement by statement, not run against a server (see the README). Snowflake commits
each DDL statement on its own, so a run that fails after creating its outputs can leave ``optout_new_*``
tables behind, and the renames that publish the outputs are not one atomic step.
"""

from __future__ import annotations

from typing import Any, ClassVar

import sqlalchemy as sa

from optout.homes.sql.dialect import Dialect

_TWO_TO_63 = 2**63
_TWO_TO_64 = 2**64


class Snowflake(Dialect):
    """Snowflake hash-joins and has no indexes (a primary key is only a note), so staged sets have none."""

    name: ClassVar[str] = "snowflake"
    indexed_sets: ClassVar[bool] = False

    def only(self, value: sa.ColumnElement[str], alphabet: str) -> sa.ColumnElement[bool]:
        return sa.func.translate(value, alphabet, "") == ""

    def quotient(self, dividend: sa.ColumnElement[Any], divisor: sa.ColumnElement[Any]) -> sa.ColumnElement[int]:
        # Dividing the multiple below the dividend is exact: no rounding at the decimal result's scale.
        return sa.cast((dividend - dividend % divisor) / divisor, sa.BigInteger)

    def to_bigint(self, digits: sa.ColumnElement[str]) -> sa.ColumnElement[int]:
        return sa.try_cast(digits, sa.BigInteger)

    def rename(self, conn: sa.Connection, table: sa.Table, name: str) -> None:
        # An unqualified new name would move the table into the session's current schema.
        preparer = conn.dialect.identifier_preparer
        target = sa.Table(name, sa.MetaData(), schema=table.schema)
        conn.exec_driver_sql(f"ALTER TABLE {preparer.format_table(table)} RENAME TO {preparer.format_table(target)}")

    def row_hash_sum(self, conn: sa.Connection, row: sa.ColumnElement[str]) -> tuple[str, sa.ColumnElement[Any]]:
        unsigned = sa.func.md5_number_upper64(row)  # the MD5's first 8 bytes, unsigned
        signed = unsigned - sa.case((unsigned >= _TWO_TO_63, sa.literal_column(str(_TWO_TO_64))), else_=0)
        return "md5-prefix", sa.func.coalesce(sa.func.sum(signed), 0)
