"""SQL pushdown: filter tables where they live, with the file engine's semantics and manifest.

Nothing but counts crosses into Python. One connection, one transaction (REPEATABLE READ on
PostgreSQL, so every pass reads one snapshot), opened through :mod:`optout.db`; the passes are in
:mod:`optout.homes.sql.run`. Output hashes (the manifest's ``sha256`` for a table) are content
hashes, see :func:`optout.homes.sql.content_hash.content_hash`. Database errors never quote data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

import sqlalchemy as sa

from optout import db
from optout.clearance import CheckResultLike
from optout.errors import OptOutError
from optout.homes.sql.content_hash import content_hash
from optout.homes.sql.dialect import Dialect
from optout.homes.sql.dialects import dialect_for
from optout.homes.sql.run import Run, TableMeasure
from optout.manifest import TableReport

if TYPE_CHECKING:
    from optout.spec import ExtractSpec

_T = TypeVar("_T")
ENGINE = "sql"


class DatabaseError(OptOutError, RuntimeError):
    """The database failed a step of the filter; the transaction was rolled back."""

    exit_code = 1


def filter_sql(
    spec: ExtractSpec,
    check_result: CheckResultLike | None,
    *,
    engine: sa.Engine | str,
    connection_secret: Callable[[str], str | None] | None = None,
) -> tuple[list[TableReport], dict[str, int]]:
    """Filter every table of ``spec`` inside its database; return per-table reports and people removed.

    ``engine`` is a SQLAlchemy engine or URL (the Airflow skin turns a connection id into one);
    ``connection_secret`` reads a pseudonymisation key from an Airflow connection. Outputs replace
    their tables only when every table succeeded.
    """

    def work(run: Run) -> tuple[list[TableReport], dict[str, int]]:
        reports, people = run.run()
        run.publish()
        run.scratch.drop()
        return reports, people

    return _session(engine, spec, check_result, connection_secret, work, keep=True)


def measure_tables(
    spec: ExtractSpec,
    check_result: CheckResultLike | None,
    *,
    engine: sa.Engine | str,
    connection_secret: Callable[[str], str | None] | None = None,
) -> list[TableMeasure]:
    """Measure each output table of ``spec`` in its database (spec order): rows, content hash, input rows
    now and, given a check result, rows carrying an uncleared number or person. Only counts leave the
    database; read-only (everything staged is rolled back)."""
    rows = check_result is not None and spec.filtered
    return _session(engine, spec, check_result, connection_secret, lambda run: run.measure(rows), keep=False)


def table_hashes(engine: sa.Engine | str, tables: Sequence[str]) -> dict[str, str | None]:
    """The content hash of each named table now (``schema.name`` allowed; None when it is missing), in one
    snapshot: what the send-time gate compares with the manifest."""
    hashes: dict[str, str | None] = {}
    try:
        with db.bound(engine) as bound, _transaction(bound) as (conn, dialect):
            for name in tables:
                try:
                    hashes[name] = content_hash(conn, _reflect(conn, dialect, name), dialect)[1]
                except sa.exc.NoSuchTableError:
                    hashes[name] = None
            conn.rollback()
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(f"the database refused to hash the extract's tables ({type(exc.orig).__name__})") from None
    return hashes


def _reflect(conn: sa.Connection, dialect: Dialect, qualified: str) -> sa.Table:
    schema, _, name = qualified.rpartition(".")
    return dialect.table(conn, name, schema or None)


def _session(
    engine: sa.Engine | str,
    spec: ExtractSpec,
    check_result: CheckResultLike | None,
    connection_secret: Callable[[str], str | None] | None,
    work: Callable[[Run], _T],
    *,
    keep: bool,
) -> _T:
    """Run ``work`` in one transaction, committed only when ``keep``; database errors never quote data.
    Where DDL is not transactional, what the run created and did not publish is dropped, whatever
    happened (a rollback would not)."""
    try:
        with db.bound(engine) as bound, _transaction(bound) as (conn, dialect):
            run = Run(conn, dialect, spec, check_result, connection_secret)
            try:
                result = work(run)
            finally:
                if not dialect.transactional_ddl:
                    run.discard()
            if not keep:
                conn.rollback()
        return result
    except sa.exc.DBAPIError as exc:
        # The driver's message may quote a value (an NHS number): name the error type only.
        raise DatabaseError(
            f"the database refused the filter ({type(exc.orig).__name__}); nothing was written. Check the "
            "connection's permissions (CREATE TABLE, TEMPORARY) and that the tables are readable"
        ) from None


@contextmanager
def _transaction(engine: sa.Engine) -> Iterator[tuple[sa.Connection, Dialect]]:
    """One connection in one write transaction, set up as the engine's dialect says; its DDL included."""
    dialect = dialect_for(engine)
    with db.transaction(engine, write=True, snapshot=True) as conn:
        dialect.begin(conn)
        yield conn, dialect
