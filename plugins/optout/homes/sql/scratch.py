"""The scratch tables of one run: named with the run's tag, created as the dialect says, dropped before
the commit (and gone with the transaction on any error)."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from optout.homes.sql.dialect import Dialect


class Scratch:
    """Creates and tracks one run's scratch tables on one connection."""

    def __init__(self, conn: sa.Connection, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect
        self.tag = uuid.uuid4().hex[:10]
        self.metadata = sa.MetaData()
        self._tables: list[sa.Table] = []

    def table(self, role: str, *columns: sa.Column[Any]) -> sa.Table:
        """An empty scratch table with ``columns``."""
        prefixes = [self.dialect.scratch_prefix] if self.dialect.scratch_prefix else []
        name = self.dialect.scratch_name(f"optout_{role}_{self.tag}")
        table = sa.Table(name, self.metadata, *columns, prefixes=prefixes)
        table.create(self.conn)
        return self._track(table)

    def table_as(self, role: str, query: sa.Select[Any]) -> sa.Table:
        """A scratch table holding ``query``'s rows (one statement: the database may scan in parallel)."""
        name = self.dialect.scratch_name(f"optout_{role}_{self.tag}")
        self.conn.execute(self.dialect.create_scratch_as(query, name))
        table = self.dialect.table(self.conn, name, metadata=self.metadata)
        self.dialect.analyse(self.conn, table)
        return self._track(table)

    def analyse(self, *tables: sa.Table | None) -> None:
        for table in tables:
            if table is not None:
                self.dialect.analyse(self.conn, table)

    def drop(self, *, if_exists: bool = False) -> None:
        for table in reversed(self._tables):
            self.conn.execute(sa.schema.DropTable(table, if_exists=if_exists))
        self._tables.clear()

    def _track(self, table: sa.Table) -> sa.Table:
        self._tables.append(table)
        return table
