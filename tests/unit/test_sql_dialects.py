"""SQL Server (Azure SQL, Synapse) and Snowflake, compiled: every statement one filter run, its publish and
its proof issue, written by SQLAlchemy's mssql dialect and snowflake-sqlalchemy's snowflake dialect and
checked for each database's spelling. No server runs here (the README says so); DuckDB, SQLite and
PostgreSQL run for real in tests/integration/test_sql_engine.py."""

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


OUTPUTS = {"patients_optout": "patients", "select": "events", "notes_optout": "notes"}


def prepared(
    url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    outputs: dict[str, str] | None = None,
    fail_on: str | None = None,
) -> tuple[Run, list[str]]:
    """A run over a mock engine that writes down every statement as the database would get it (and
    fails the first one containing ``fail_on``). ``outputs``: the output tables there already."""
    statements: list[str] = []

    def columns(self: Dialect, conn: Any, name: str, schema: str | None = None) -> dict[str, Kind]:
        """The catalog the run sees: the three tables, the outputs there, and the tables the run made."""
        if "uncleared" in name:
            return {"k": Kind.TEXT, "v": Kind.TEXT}
        for table, kinds in COLUMNS.items():
            if table in (name, (outputs or {}).get(name)) or name.endswith(f"_{list(COLUMNS).index(table)}"):
                return kinds
        raise sa.exc.NoSuchTableError(name)

    def execute(statement: Any, *args: Any, **kwargs: Any) -> _Result:
        sql = statement if isinstance(statement, str) else str(statement.compile(dialect=engine.dialect))
        statements.append(sql)
        if fail_on and fail_on in sql:
            raise sa.exc.OperationalError(fail_on, None, Exception("refused"))
        return _Result()

    engine: Any = sa.create_mock_engine(url, execute)
    engine.exec_driver_sql = execute
    monkeypatch.setattr(Dialect, "columns", columns)
    (tmp_path / "spec.yaml").write_text(SPEC % {"url": url})
    dialect = dialect_named(engine.dialect.name)
    dialect.begin(engine)
    return Run(engine, dialect, load_spec(tmp_path / "spec.yaml"), check_result(), None), statements


def compiled(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outputs: dict[str, str] | None = None
) -> list[str]:
    """Every statement of one filter run, its publish and its proof's counts, as the database gets it."""
    run, statements = prepared(url, tmp_path, monkeypatch, outputs)
    run.run()
    run.publish()
    run.scratch.drop()
    Run(run.conn, run.dialect, run.spec, run.staging.check, None).measure(rows=True)  # as the proof does
    return statements


def test_sql_server_statements_are_t_sql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    statements = compiled("mssql+pymssql://", tmp_path, monkeypatch, OUTPUTS)  # the proof measures all
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
    # READ COMMITTED: a row learning did not see is looked up in the cleared set all the same.
    keyed = next(s for s in statements if " INTO [#" not in s and " INTO optout_new_" in s)
    assert "#optout_bad_keys_" in keyed and "#optout_numbers_cleared_" in keyed and "IS NOT NULL OR" not in keyed
    for spelling in (r"\bLIMIT\b", r"\|\|", r"\bsubstr\(", r"\btranslate\(", r"\bbtrim\(", r"\blength\(", "//"):
        assert not re.search(spelling, sql, re.IGNORECASE), spelling


def test_snowflake_statements_swap_whole_outputs_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "snowflake://me@account/db/schema"
    statements = compiled(url, tmp_path, monkeypatch, OUTPUTS)  # old outputs there: the proof measures all
    sql = "\n".join(statements)
    assert "CREATE TEMPORARY TABLE optout_numbers_cleared_" in sql  # session-private scratch tables
    assert "CREATE TEMPORARY TABLE optout_uncleared0_" in sql and "CREATE TABLE dbo.optout_new_" in sql
    assert "PRIMARY KEY" not in sql  # neither indexed nor enforced there
    # Each output is built whole, then put in place by one statement; the old one dropped after.
    assert _publish(statements) == [
        "ALTER TABLE new0 SWAP WITH patients_optout",
        "DROP TABLE new0",
        'ALTER TABLE dbo.new1 SWAP WITH dbo."select"',
        "DROP TABLE dbo.new1",
        "ALTER TABLE new2 SWAP WITH notes_optout",
        "DROP TABLE new2",
    ]
    assert "IF EXISTS" not in sql  # nothing was left for the run's own clean-up to drop
    fresh = compiled(url, tmp_path, monkeypatch)  # no old outputs: renamed in, within their schema
    assert _publish(fresh) == [
        "ALTER TABLE new0 RENAME TO patients_optout",
        'ALTER TABLE dbo.new1 RENAME TO dbo."select"',
        "ALTER TABLE new2 RENAME TO notes_optout",
    ]
    # A row learning did not see is looked up in the cleared set all the same (no shared snapshot).
    keyed = next(s for s in statements if s.startswith("CREATE TABLE optout_new_") and "patients" in s)
    assert "optout_bad_keys_" in keyed and "optout_numbers_cleared_" in keyed and "IS NOT NULL OR" not in keyed
    assert "try_to_number(" in sql and "regexp_like(" in sql and "md5_number_upper64(" in sql
    # Exact integer division: the remainder taken off before '/', which keeps only 6 decimals here.
    assert re.search(r"CAST\(\(.+? - mod\(.+?\)\) / %\(param_\d+\)s AS BIGINT\)", sql) and "FLOOR(" not in sql
    assert "AS VARCHAR)" in sql and "AS TEXT" not in sql
    others = (r"\bTRY_CAST\b", r"\btranslate\(", r"\bbtrim\(", r"\bhashbytes\(", "#optout", "//", r"INTO \S*optout_new")
    for spelling in others:
        assert not re.search(spelling, sql, re.IGNORECASE), spelling


def _publish(statements: list[str]) -> list[str]:
    """The statements that put outputs in place, the run's tag taken out of the new tables' names."""
    moves = [s.strip() for s in statements if s.startswith("ALTER") or ("DROP TABLE" in s and "optout_new" in s)]
    return [re.sub(r"optout_new_\w+_(\d)", r"new\1", s) for s in moves]


@pytest.mark.parametrize("fail_on", ["CREATE TABLE dbo.optout_new", "SWAP WITH dbo."])
def test_a_failed_snowflake_run_drops_what_it_made(
    fail_on: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each DDL statement commits on Snowflake, so no rollback takes the scratch and new tables away: the run
    drops them itself, and a failure never touches an old output that was not yet swapped."""
    run, statements = prepared("snowflake://me@account/db/schema", tmp_path, monkeypatch, OUTPUTS, fail_on)
    with pytest.raises(sa.exc.OperationalError):
        run.run()
        run.publish()
    failed = len(statements)
    run.discard()
    dropped = _publish([s for s in statements[failed:] if "optout_new" in s])
    scratch = [s.strip() for s in statements[failed:] if "optout_new" not in s]
    assert len(scratch) == 7 and all(s.startswith("DROP TABLE IF EXISTS optout_") for s in scratch)
    if fail_on.startswith("SWAP"):  # the first output is new, the second and third old and whole
        assert _publish(statements[:failed])[:2] == ["ALTER TABLE new0 SWAP WITH patients_optout", "DROP TABLE new0"]
        assert dropped == ["DROP TABLE IF EXISTS dbo.new1", "DROP TABLE IF EXISTS new2"]
    else:  # nothing swapped; the table being created failed, so is not there
        assert _publish(statements[:failed]) == [] and dropped == ["DROP TABLE IF EXISTS new0"]


def test_every_supported_database_has_a_dialect_and_others_are_refused() -> None:
    assert sorted(DIALECTS) == sorted(DATABASES)
    refusal = r"informix databases are not supported; supported: duckdb, mssql, postgresql, snowflake, sqlite$"
    with pytest.raises(InputError, match=refusal):
        dialect_named("informix")


def test_an_unsupported_database_is_refused_on_loading_the_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from optout.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("%(url)s", "oracle+oracledb://me@host/db"))
    code = main(["filter", "--spec", str(spec), "--out-dir", str(tmp_path / "out")])
    lines = [line for line in (capsys.readouterr().err + capsys.readouterr().out).splitlines() if line]
    assert code == 2 and not (tmp_path / "out").exists()
    assert lines == [
        f"optout: file {spec}, field 'tables[0].connection': extracts in oracle databases are not supported; "
        "supported: duckdb, mssql, postgresql, snowflake, sqlite"
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


def test_a_snowflake_url_without_its_driver_is_refused_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.dialects import registry

    from optout import db

    load = registry.load

    def without_snowflake(name: str) -> Any:
        if name.startswith("snowflake"):
            raise sa.exc.NoSuchModuleError(f"Can't load plugin: sqlalchemy.dialects:{name}")
        return load(name)

    monkeypatch.setattr(registry, "load", without_snowflake)
    refusal = (
        r"^cannot open snowflake://me:\*\*\*@account/db/schema: SQLAlchemy has no dialect 'snowflake': unknown, "
        r"or its package \(snowflake-sqlalchemy for Snowflake\) is not installed$"
    )
    with pytest.raises(InputError, match=refusal):
        db.engine("snowflake://me:secret@account/db/schema")
