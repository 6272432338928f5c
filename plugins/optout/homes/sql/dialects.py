"""The databases the SQL home knows, by SQLAlchemy's dialect name: one line per database."""

from __future__ import annotations

import sqlalchemy as sa

from optout.errors import InputError
from optout.homes.sql import unsupported
from optout.homes.sql.dialect import Dialect
from optout.homes.sql.duckdb import DuckDB
from optout.homes.sql.mssql import SQLServer
from optout.homes.sql.postgres import PostgreSQL
from optout.homes.sql.snowflake import Snowflake
from optout.homes.sql.sqlite import SQLite

DIALECTS: dict[str, Dialect] = {
    dialect.name: dialect for dialect in (PostgreSQL(), SQLite(), DuckDB(), SQLServer(), Snowflake())
}


def dialect_named(name: str) -> Dialect:
    """The :class:`Dialect` of a database by SQLAlchemy's name for it; a database the filter does not
    know is refused (one line, naming it and the supported ones)."""
    refusal = unsupported(name)
    if refusal:
        raise InputError(refusal, field="connection")
    return DIALECTS[name]


def dialect_for(bind: sa.Engine | sa.Connection) -> Dialect:
    """The :class:`Dialect` of an engine's database."""
    return dialect_named(bind.dialect.name)
