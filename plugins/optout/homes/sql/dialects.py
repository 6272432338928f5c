"""The databases the SQL home knows, by SQLAlchemy's dialect name: one line per database."""

from __future__ import annotations

import sqlalchemy as sa

from optout.errors import InputError
from optout.homes.sql.dialect import Dialect
from optout.homes.sql.duckdb import DuckDB
from optout.homes.sql.postgres import PostgreSQL
from optout.homes.sql.sqlite import SQLite

DIALECTS: dict[str, Dialect] = {dialect.name: dialect for dialect in (PostgreSQL(), SQLite(), DuckDB())}


def dialect_for(bind: sa.Engine | sa.Connection) -> Dialect:
    """The :class:`Dialect` of an engine's database; a database the filter does not know is refused."""
    name = bind.dialect.name
    try:
        return DIALECTS[name]
    except KeyError:
        known = ", ".join(sorted(DIALECTS))
        raise InputError(
            f"extracts in {name} databases are not supported; supported: {known}", field="connection"
        ) from None
