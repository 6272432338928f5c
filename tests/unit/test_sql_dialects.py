"""SQL Server (Azure SQL, Synapse), compiled: every statement one filter run, its publish and its proof
issue, written by SQLAlchemy's mssql dialect and checked for T-SQL's spelling. No server runs here (the
README says so); DuckDB, SQLite and PostgreSQL run for real in tests/integration/test_sql_engine.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from optout.errors import InputError
from optout.homes.sql import DATABASES
from optout.homes.sql.dialect import Dialect
from optout.homes.sql.dialects import DIALECTS, dialect_named
from optout.homes.sql.expressions import Kind
from optout.homes.sql.run import Run
from optout.spec import load_spec
from tests.unit.filter_data import check_result

SPEC = """\
name: compiled
purpose: research
tables:
  - {name: patients, table: dbo.patients, connection: '%(url)s', nhs_number: nhs_number, person_key: pid}
  - {name: events, table: dbo.events, connection: '%(url)s', nhs_number: nhs, person_key: pid, output: dbo.select}
  - {name: notes, table: dbo.notes, connection: '%(url)s', person_key: pid}
"""
COLUMNS = {
    "patients": {"pid": Kind.TEXT, "nhs_number": Kind.TEXT, "note": Kind.TEXT},
    "events": {"pid": Kind.TEXT, "nhs": Kind.INTEGER, "score": Kind.FLOAT},
    "notes": {"pid": Kind.TEXT, "text": Kind.TEXT},
}


class _Result:
    """What the run reads back from a statement: zero counts, no rows."""

    def scalar_one(self) -> int:
        return 0

    def one(self) -> tuple[int, int]:
        return 0, 0

    def all(self) -> list[Any]:
        return []


def _columns(self: Dialect, conn: Any, name: str, schema: str | None = None) -> dict[str, Kind]:
    """The catalog the compiled run sees: the three tables, and the scratch and output tables it made."""
    if "uncleared" in name:
        return {"k": Kind.TEXT, "v": Kind.TEXT}
    for table, columns in COLUMNS.items():
        if name == table or name.endswith(f"_{list(COLUMNS).index(table)}"):
            return columns
    raise sa.exc.NoSuchTableError(name)


def compiled(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement of one filter run, its publish and its proof's counts, as the database gets it."""
    statements: list[str] = []

    def execute(statement: Any, *args: Any, **kwargs: Any) -> _Result:
        if isinstance(statement, str):
            statements.append(statement)
        else:
            statements.append(str(statement.compile(dialect=engine.dialect)))
        return _Result()

    engine: Any = sa.create_mock_engine(url, execute)
    engine.exec_driver_sql = execute
    monkeypatch.setattr(Dialect, "columns", _columns)
    (tmp_path / "spec.yaml").write_text(SPEC % {"url": url})
    dialect = dialect_named(engine.dialect.name)
    dialect.begin(engine)
    run = Run(engine, dialect, load_spec(tmp_path / "spec.yaml"), check_result(), None)
    run.run()
    run.publish()
    run.scratch.drop()
    run.measure(rows=True)
    return statements


def test_sql_server_statements_are_t_sql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    statements = compiled("mssql+pymssql://", tmp_path, monkeypatch)
    sql = "\n".join(statements)
    assert statements[0] == "SET XACT_ABORT ON"  # any error rolls back the whole run, DDL included
    assert "CREATE TABLE [#optout_numbers_cleared_" in sql and "TEMPORARY" not in sql  # temporary by name
    assert " INTO [#optout_uncleared0_" in sql  # CREATE TABLE AS is SELECT ... INTO
    into = re.compile(r"SELECT optout_rows\.[\w., ]* INTO \S+ \nFROM \(")
    for statement in statements:  # INTO right after the plain select list, never inside an expression
        assert not statement.startswith("SELECT") or " INTO " not in statement or into.match(statement)
    assert " INTO dbo.optout_new_" in sql and "CREATE TABLE optout_new" not in sql
    assert "EXEC sp_rename" in sql and "RENAME TO" not in sql
    assert "DROP TABLE IF EXISTS dbo.[select]" in sql  # identifiers quoted where T-SQL needs it
    assert "TRY_CAST" in sql and "TRIM(" in sql and "\tFROM CAST(" in sql  # TRIM(characters FROM value)
    assert "NOT LIKE" in sql and "substring(" in sql and "LEN(" in sql and "hashbytes(" in sql
    assert "NVARCHAR(max)" in sql and "AS TEXT" not in sql
    for spelling in (r"\bLIMIT\b", r"\|\|", r"\bsubstr\(", r"\btranslate\(", r"\bbtrim\(", r"\blength\(", "//"):
        assert not re.search(spelling, sql, re.IGNORECASE), spelling


def test_every_supported_database_has_a_dialect_and_others_are_refused() -> None:
    assert sorted(DIALECTS) == sorted(DATABASES)
    refusal = r"informix databases are not supported; supported: duckdb, mssql, postgresql, sqlite$"
    with pytest.raises(InputError, match=refusal):
        dialect_named("informix")


def test_an_unsupported_database_is_refused_on_loading_the_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from optout.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("%(url)s", "snowflake://me@account/db/schema"))
    code = main(["filter", "--spec", str(spec), "--out-dir", str(tmp_path / "out")])
    lines = [line for line in (capsys.readouterr().err + capsys.readouterr().out).splitlines() if line]
    assert code == 2 and not (tmp_path / "out").exists()
    assert lines == [
        f"optout: file {spec}, field 'tables[0].connection': extracts in snowflake databases are not supported; "
        "supported: duckdb, mssql, postgresql, sqlite"
    ]


def test_an_unsupported_database_behind_a_connection_id_is_refused_when_the_home_is_chosen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optout.homes import home_for

    (tmp_path / "spec.yaml").write_text(SPEC.replace("%(url)s", "warehouse"))  # an Airflow id: URL unknown yet
    spec = load_spec(tmp_path / "spec.yaml")
    engine = sa.create_engine("sqlite://")
    monkeypatch.setattr(engine.dialect, "name", "informix")
    for database in ("oracle+oracledb://me@host/db", engine):
        with pytest.raises(InputError, match=r"(oracle|informix) databases are not supported; supported: duckdb"):
            home_for(spec, database=database)
