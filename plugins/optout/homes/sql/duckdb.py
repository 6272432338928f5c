"""DuckDB (``duckdb:///path`` through duckdb-engine): staged sets handed over as Arrow tables, ``//`` for
integer division, hash joins without indexes, and the first 8 bytes of each row's MD5 as the row hash."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from optout.homes.sql.dialect import Dialect
from optout.homes.sql.expressions import Kind

_INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
_FLOAT_TYPES = ("FLOAT", "DOUBLE", "DECIMAL")
_TWO_TO_64 = 2**64
_COLUMNS = sa.text(
    "SELECT database_name, column_name, data_type FROM duckdb_columns() WHERE table_name = :name"
    " AND schema_name = coalesce(:schema, current_schema())"
    " AND (database_name = current_database() OR (database_name = 'temp' AND :schema IS NULL))"
    " ORDER BY database_name = 'temp' DESC, column_index"
)


class DuckDB(Dialect):
    """DuckDB hash-joins everything and its indexes cost more to build than they save, so the staged sets
    have no primary key. Its ``/`` divides integers into a float (``//`` keeps them whole), and its
    ``hash()`` may change between releases, so the content hash uses MD5 (the same row hash as SQLite's)."""

    name: ClassVar[str] = "duckdb"
    indexed_sets: ClassVar[bool] = False

    def begin(self, conn: sa.Connection) -> None:
        # Also on an engine made elsewhere (see optout.db): a query may not reach the worker's files. DuckDB
        # keeps this off for the rest of the database instance's life.
        conn.exec_driver_sql("SET enable_external_access = false")

    def only(self, value: sa.ColumnElement[str], alphabet: str) -> sa.ColumnElement[bool]:
        return sa.func.translate(value, alphabet, "") == ""

    def quotient(self, dividend: sa.ColumnElement[Any], divisor: sa.ColumnElement[Any]) -> sa.ColumnElement[int]:
        return dividend.op("//", return_type=sa.BigInteger)(divisor)

    def load(self, conn: sa.Connection, table: sa.Table, values: np.ndarray) -> None:
        # The array goes over as an Arrow table DuckDB scans in place: no rows pass through Python.
        if values.ndim == 1:
            column = pa.array(values, pa.int64())
        else:
            width = values.shape[1] - 1
            offsets = np.arange(len(values) + 1, dtype=np.int32) * width
            text = np.ascontiguousarray(values[:, :-1]).tobytes()
            column = pa.StringArray.from_buffers(len(values), pa.py_buffer(offsets), pa.py_buffer(text))
        raw: Any = conn.connection.dbapi_connection
        view = f"{table.name}_arrow"
        raw.register(view, pa.table({"n": column}))
        try:
            conn.exec_driver_sql(f"INSERT INTO {self.quoted(conn, table)} (n) SELECT n FROM {view}")
        finally:
            raw.unregister(view)

    def query_kind(self, type_code: Any) -> Kind:
        name = str(type_code).upper()
        if name in _INTEGER_TYPES:
            return Kind.INTEGER
        if name.startswith(_FLOAT_TYPES):
            return Kind.FLOAT
        return Kind.TEXT

    def columns(self, conn: sa.Connection, name: str, schema: str | None = None) -> dict[str, Kind]:
        # duckdb-engine's reflection (PostgreSQL's catalog queries) fails under SQLAlchemy 2.1; DuckDB's own
        # catalog answers, looking where an unqualified name resolves: the session's temporary tables first.
        found = conn.execute(_COLUMNS, {"name": name, "schema": schema}).all()
        if not found:
            raise sa.exc.NoSuchTableError(name)
        first = found[0].database_name
        return {row.column_name: self.query_kind(row.data_type) for row in found if row.database_name == first}

    def row_hash_sum(self, conn: sa.Connection, row: sa.ColumnElement[str]) -> tuple[str, sa.ColumnElement[Any]]:
        # The first 16 hex digits of the MD5 read as an unsigned 64-bit number, made signed, summed exactly.
        digest = sa.func.md5(row)
        unsigned = sa.cast(sa.cast("0x" + sa.func.substr(digest, 1, 16), _Native("UBIGINT")), _Native("HUGEINT"))
        wrap = sa.case((sa.func.substr(digest, 1, 1) >= "8", sa.literal_column(str(_TWO_TO_64))), else_=0)
        return "md5-prefix", sa.func.coalesce(sa.func.sum(unsigned - wrap), 0)


class _Native(sa.types.UserDefinedType[int]):
    """One of DuckDB's own integer types, by name (duckdb-engine's types would import DuckDB itself)."""

    cache_ok = True

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def get_col_spec(self, **kw: Any) -> str:
        return self.spec
