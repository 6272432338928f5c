"""Extracts kept as tables in a database, filtered there: only counts cross into Python.

:mod:`engine` is the entry point (filter, measure, hash); :mod:`run` the passes of one run;
:mod:`staging` the check result loaded into scratch tables; :mod:`expressions` the NHS number
classification in SQL; :mod:`content_hash` the order-independent table hash. What differs between
databases is one :class:`~optout.homes.sql.dialect.Dialect` per database, chosen once per engine by
:func:`~optout.homes.sql.dialects.dialect_for` (:mod:`postgres`, :mod:`sqlite`, :mod:`duckdb`, :mod:`mssql`,
:mod:`snowflake`).
This module imports nothing, so the spec can refuse an unsupported database on load.
"""

from __future__ import annotations

# SQLAlchemy's names of the databases the SQL home filters in (one Dialect each in dialects.py).
DATABASES = ("duckdb", "mssql", "postgresql", "snowflake", "sqlite")


def unsupported(database: str) -> str | None:
    """Why a database (SQLAlchemy's backend name) cannot hold an extract, or None when it can."""
    if database in DATABASES:
        return None
    return f"extracts in {database} databases are not supported; supported: {', '.join(DATABASES)}"


def backend_of(url: str) -> str | None:
    """The backend name of a SQLAlchemy URL (``mssql+pymssql://`` -> ``mssql``); None for an Airflow
    connection id, whose URL is only known inside Airflow."""
    scheme, found, _ = url.partition("://")
    return scheme.partition("+")[0] if found else None
