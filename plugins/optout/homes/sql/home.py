"""The SQL home: an extract kept as tables (or queries) in one database, filtered there; its outputs are
tables in the same database and the extract folder holds only the manifest."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import sqlalchemy as sa

from optout import db
from optout.clearance import CheckResultLike
from optout.errors import InputError, VerificationFailed
from optout.homes.base import ExtractHome
from optout.homes.sql import backend_of, engine
from optout.homes.sql.dialects import dialect_for, dialect_named
from optout.homes.sql.run import TableMeasure
from optout.input_scan import InputScan
from optout.manifest import TableReport
from optout.spec import ExtractSpec, TableSpec

_BATCH_ROWS = 65_536


class SqlHome(ExtractHome):
    """:param database: the database holding the tables, as an engine or a SQLAlchemy URL (passed in:
        the Airflow skin resolves a connection id); None only for a home that will not be read.
    :param secret: reads a pseudonymisation key's Airflow connection (conn id -> password).
    """

    engine: ClassVar[str] = engine.ENGINE
    holds_files: ClassVar[bool] = False

    def __init__(
        self,
        spec: ExtractSpec | None,
        database: sa.Engine | str | None,
        secret: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__(spec, secret=secret)
        # The database is known now (an Airflow connection id resolved): refuse one we cannot filter in
        # before anything runs.
        backend = database.dialect.name if isinstance(database, sa.Engine) else backend_of(database or "")
        if backend is not None:
            dialect_named(backend)
        self._database = database

    @classmethod
    def for_outputs(cls, database: Any = None) -> SqlHome:
        return cls(None, database)

    @property
    def database(self) -> sa.Engine | str:
        if self._database is None:
            name = self._spec.name if self._spec is not None else "this extract"
            raise VerificationFailed(
                f"extract {name!r} is held in database tables: give the spec's connection so they can be "
                "hashed again before sending"
            )
        return self._database

    def filter(
        self, staging: Path, check_result: CheckResultLike, scan: InputScan | None = None
    ) -> tuple[list[TableReport], dict[str, int]]:
        return engine.filter_sql(self.spec, check_result, engine=self.database, connection_secret=self.secret)

    def copy(self, staging: Path) -> list[TableReport]:
        return engine.filter_sql(self.spec, None, engine=self.database, connection_secret=self.secret)[0]

    def hashes(self, out_dir: Path, names: Iterable[str]) -> dict[str, str | None]:
        return engine.table_hashes(self.database, sorted(set(names)))

    def measure_in_place(self, out_dir: Path, check_result: CheckResultLike | None) -> list[TableMeasure]:
        """Each output table's counts and content hash, computed in the database (the proof's figures)."""
        return engine.measure_tables(self.spec, check_result, engine=self.database, connection_secret=self.secret)

    def output_batches(
        self, out_dir: Path, table: TableSpec, columns: Sequence[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        return self._batches(replace(table, table=table.output_name, query=None), columns)

    def input_batches(self, table: TableSpec, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        return self._batches(table, columns)

    def _batches(self, table: TableSpec, columns: Sequence[str] | None) -> Iterator[pa.RecordBatch]:
        """Stream a table (or query) in one snapshot; values become Arrow arrays by their Python types
        (text where a column mixes them). They stay in memory: never logged or shown, and a database error
        is named by its type only (the driver's message may quote a value)."""
        try:
            yield from self._read(table, columns)
        except sa.exc.DBAPIError as exc:
            error = type(exc.orig).__name__
            if table.query:
                source = self._spec.source if self._spec is not None else None
                raise InputError(f"the query does not run: {error}", path=source, field=f"{table.name}.query") from None
            raise engine.DatabaseError(f"the database refused to read table {table.name!r} ({error})") from None

    def _read(self, table: TableSpec, columns: Sequence[str] | None) -> Iterator[pa.RecordBatch]:
        with db.bound(self.database) as bound, db.transaction(bound, snapshot=True) as conn:
            if table.query:
                source: sa.FromClause = sa.text(table.query).columns().subquery("src")
                query = sa.select(sa.text("*")).select_from(source)
            else:
                assert table.table
                schema, _, name = table.table.rpartition(".")
                # Untyped columns: values come as the driver gives them, not converted by the declared type
                # (SQLite lets a REAL column hold text, which a typed result processor cannot read).
                names_in = list(dialect_for(conn).columns(conn, name, schema or None))
                source = sa.table(name, *(sa.column(column) for column in names_in), schema=schema or None)
                query = sa.select(*(source.c[column] for column in columns or names_in))
            result = conn.execution_options(stream_results=True).execute(query)
            names = list(result.keys())
            wanted = list(columns) if columns is not None else names
            for rows in result.partitions(_BATCH_ROWS):
                values = list(zip(*rows, strict=True)) if rows else [()] * len(names)
                by_name = dict(zip(names, values, strict=True))
                yield pa.RecordBatch.from_arrays([_arrow(by_name[name]) for name in wanted], names=wanted)


def _arrow(values: Sequence[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if value is None else str(value) for value in values], type=pa.string())
