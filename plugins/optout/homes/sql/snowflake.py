"""Snowflake (SQLAlchemy's ``snowflake`` dialect, from snowflake-sqlalchemy): session-private TEMPORARY
scratch tables, ``REGEXP_LIKE`` for the digit test, ``TRY_TO_NUMBER``, exact integer division, outputs swapped
in with ``ALTER TABLE ... SWAP WITH``, and ``MD5_NUMBER_UPPER64`` as the row hash.

Compiled and checked statement by statement, not run against a server (see the README).
"""

from __future__ import annotations

from typing import Any, ClassVar

import sqlalchemy as sa

from optout.homes.sql.dialect import Dialect

_TWO_TO_63 = 2**63
_TWO_TO_64 = 2**64


class Snowflake(Dialect):
    """Snowflake differs from the databases the run was written for in two ways that matter.

    *Each DDL statement commits.* ``CREATE``, ``ALTER`` and ``DROP`` end the open transaction, so a run
    cannot make its outputs appear in one commit, nor take them back by rolling back. Each output is
    therefore built in full under a temporary name first, and only then put in place by one statement:
    ``ALTER TABLE new SWAP WITH output`` where the output exists (one atomic exchange), else ``ALTER TABLE
    new RENAME TO output``; the old output, now under the temporary name, is dropped after. A failure at
    any point leaves every old output whole: before the swap it is untouched, after it the new one is in
    place. Outputs are swapped one by one, so a run failing between two swaps leaves some outputs new and
    some old, each whole; the run failed, so it writes no manifest, and the send-time gate (each table's
    content hash against the manifest) refuses tables that do not match one. What a failed run created and
    did not publish (scratch and half-built tables) is dropped by :meth:`Run.discard
    <optout.homes.sql.run.Run.discard>`, since no rollback does it here.

    *Statements do not share a snapshot.* Snowflake reads committed data as of each statement, so rows
    written to an input during the run may be seen by the write pass and not by learning: every output
    row is looked up in the cleared set itself (:attr:`~optout.homes.sql.dialect.Dialect.one_snapshot`),
    never let through because learning did not see it. The report's counts come from separate
    statements and may then disagree; the independent proof counts the outputs again.

    Snowflake neither indexes nor enforces keys: staged sets have no primary key.
    """

    name: ClassVar[str] = "snowflake"
    indexed_sets: ClassVar[bool] = False
    transactional_ddl: ClassVar[bool] = False
    one_snapshot: ClassVar[bool] = False
    text_type: ClassVar[sa.types.TypeEngine[str]] = sa.VARCHAR()

    def only(self, value: sa.ColumnElement[str], alphabet: str) -> sa.ColumnElement[bool]:
        # Snowflake anchors REGEXP_LIKE's pattern at both ends: the whole value must match.
        return sa.func.regexp_like(value, f"[{alphabet}]*")

    def to_bigint(self, digits: sa.ColumnElement[str]) -> sa.ColumnElement[int]:
        # TRY_CAST is Snowflake's too, but snowflake-sqlalchemy does not write it: TRY_TO_NUMBER is the same.
        return sa.func.try_to_number(digits, type_=sa.BigInteger)

    def quotient(self, dividend: sa.ColumnElement[Any], divisor: sa.ColumnElement[Any]) -> sa.ColumnElement[int]:
        # '/' is true division to a few decimal places (6 for integers), so FLOOR(a / b), SQLAlchemy's '//'
        # here, can round up (1999999999 / 10^9); taking the remainder off first makes the division exact.
        return sa.cast((dividend - sa.func.mod(dividend, divisor)) / divisor, sa.BigInteger)

    def rename(self, conn: sa.Connection, table: sa.Table, name: str) -> None:
        # An unqualified new name would move the table into the session's current schema.
        preparer = conn.dialect.identifier_preparer
        target = preparer.format_table(sa.Table(name, sa.MetaData(), schema=table.schema))
        conn.exec_driver_sql(f"ALTER TABLE {preparer.format_table(table)} RENAME TO {target}")

    def replace(self, conn: sa.Connection, built: sa.Table, name: str) -> None:
        target = sa.Table(name, sa.MetaData(), schema=built.schema)
        try:
            self.columns(conn, name, built.schema)
        except sa.exc.NoSuchTableError:
            self.rename(conn, built, name)
            return
        preparer = conn.dialect.identifier_preparer
        conn.exec_driver_sql(f"ALTER TABLE {preparer.format_table(built)} SWAP WITH {preparer.format_table(target)}")
        conn.execute(sa.schema.DropTable(built))

    def row_hash_sum(self, conn: sa.Connection, row: sa.ColumnElement[str]) -> tuple[str, sa.ColumnElement[Any]]:
        # The MD5's first 8 bytes as an unsigned number, made signed, summed exactly in NUMBER(38, 0).
        unsigned = sa.func.md5_number_upper64(row)
        wrap = sa.case((unsigned >= sa.literal_column(str(_TWO_TO_63)), sa.literal_column(str(_TWO_TO_64))), else_=0)
        return "md5-prefix", sa.func.coalesce(sa.func.sum(unsigned - wrap), 0)
