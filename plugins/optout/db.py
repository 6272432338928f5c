"""The one database door: every engine the library opens, and every transaction it runs, come from here.

The store, the ledger and the SQL home open databases through :func:`engine` and work in
:func:`transaction`, so they behave alike. On SQLite that means: the file created owner-only, a 30 s
busy timeout, WAL (a reader never blocks the writer, nor the reverse), foreign keys enforced, and
transactions begun by us (pysqlite's own handling would not make DDL transactional), a writer taking
the write lock up front so two writers queue instead of failing on upgrade. On PostgreSQL: pooled
connections checked before use, and REPEATABLE READ where a reader needs one snapshot. On DuckDB (which
runs in this process): no access to files outside the database.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from optout.atomic import OWNER_ONLY_DIR, OWNER_ONLY_FILE
from optout.errors import InputError

BUSY_TIMEOUT_SECONDS = 30
_WAL_ATTEMPTS = 200


def engine(url: str) -> sa.Engine:
    """An engine for a SQLAlchemy URL, with the same settings whoever opens it.

    :raises InputError: the URL is not one, names an unknown dialect or a driver that is not installed;
        the message shows the URL with its password hidden, never the password.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise InputError("not a database URL: write dialect+driver://user@host/database") from None
    try:
        return _create(url, parsed)
    except sa.exc.NoSuchModuleError:
        reason = (
            f"SQLAlchemy has no dialect {parsed.drivername!r}: unknown, or its package (snowflake-sqlalchemy "
            "for Snowflake) is not installed"
        )
    except ImportError as exc:
        reason = f"its driver is not installed ({exc.name or 'unknown module'})"
    except sa.exc.ArgumentError as exc:
        reason = f"the URL's options are wrong ({type(exc).__name__})"
    raise InputError(f"cannot open {parsed.render_as_string(hide_password=True)}: {reason}")


def _create(url: str, parsed: sa.URL) -> sa.Engine:
    if parsed.get_backend_name() == "duckdb":
        # DuckDB runs inside this process: without this, a spec's query could read any file the worker can
        # (read_text('airflow.cfg')) or write one (COPY ... TO).
        return sa.create_engine(url, connect_args={"config": {"enable_external_access": False}})
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
        _create_owner_only(Path(parsed.database))
    created = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS})
    sa.event.listen(created, "connect", _sqlite_connect)
    return created


def bound(given: sa.Engine | str) -> contextlib.AbstractContextManager[sa.Engine]:
    """``given`` as an engine: a URL is opened through :func:`engine` and disposed of afterwards."""
    if isinstance(given, sa.Engine):
        return contextlib.nullcontext(given)
    return _disposing(engine(given))


@contextlib.contextmanager
def _disposing(opened: sa.Engine) -> Iterator[sa.Engine]:
    try:
        yield opened
    finally:
        opened.dispose()


@contextlib.contextmanager
def transaction(on: sa.Engine, *, write: bool = False, snapshot: bool = False) -> Iterator[sa.Connection]:
    """One connection in one transaction, committed when the block ends without error.

    ``write``: SQLite takes the write lock at BEGIN (``BEGIN IMMEDIATE``). ``snapshot``: PostgreSQL reads
    one snapshot throughout (REPEATABLE READ); SQLite's transactions always do. Works the same on an
    engine made elsewhere (a caller's warehouse engine): SQLite's driver is told to leave BEGIN to us for
    the length of the transaction.
    """
    with on.connect() as conn:
        if conn.dialect.name == "postgresql" and snapshot:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        if conn.dialect.name != "sqlite":
            with conn.begin():
                yield conn
            return
        raw: Any = conn.connection.dbapi_connection
        legacy = raw.isolation_level
        raw.isolation_level = None
        try:
            with conn.begin():
                conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
                yield conn
        finally:
            raw.isolation_level = legacy


def serialise(conn: sa.Connection, name: str) -> None:
    """Hold a lock named ``name`` until the transaction ends, so two processes creating the same tables
    queue (PostgreSQL's advisory lock; on SQLite a write transaction already holds the database's lock)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(name))))


def _create_owner_only(path: Path) -> None:
    """Create an empty (valid) SQLite file readable by its owner only; SQLite gives its WAL the same mode."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=OWNER_ONLY_DIR)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, OWNER_ONLY_FILE))


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # BEGIN is ours (see transaction)
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_SECONDS * 1000}")
    cursor.execute("PRAGMA foreign_keys = ON")
    # Switching a new file to WAL needs it to itself, and SQLite answers "locked" at once (no busy wait)
    # while another process is doing the same.
    for attempt in itertools.count(1):
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt >= _WAL_ATTEMPTS:
                raise
            time.sleep(0.05)
    cursor.close()
