"""SQL pushdown on PostgreSQL, SQLite and DuckDB: the shared extract gives the file engine's counts and rows."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from optout.errors import InputError
from optout.filter import run_filter
from optout.homes import home_for
from optout.homes.sql.content_hash import content_hash
from optout.homes.sql.dialects import dialect_for
from optout.manifest import Manifest, read_manifest
from optout.pseudonym import Key, PseudonymKeyError, hash_numbers, hex_digests
from optout.spec import load_spec
from tests.unit.filter_data import EVENTS, NOTES, PATIENTS, SPEC, N, check_result, write_extract

pytestmark = pytest.mark.integration
SECRET = "pseudonym-test-key-do-not-use"

SQL_SPEC = """\
name: test extract
purpose: research
tables:
  - name: patients
    table: patients
    connection: {url}
    nhs_number: nhs_number
    person_key: pid
  - name: events
    query: SELECT pid, nhs, happened, score FROM events
    connection: {url}
    nhs_number: nhs
    person_key: pid
  - name: notes
    table: notes
    connection: {url}
    person_key: pid
    output: notes_out
"""


def _load(url: str, tables: dict[str, pa.Table]) -> None:
    """Create and fill plain tables with the fixture's column types."""
    types = {pa.string(): sa.Text, pa.int64(): sa.BigInteger, pa.float32(): sa.Float, pa.timestamp("ms"): sa.DateTime}
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    with engine.begin() as conn:
        for name, data in tables.items():
            table = sa.Table(name, metadata, *[sa.Column(f.name, types[f.type]) for f in data.schema])
            table.drop(conn, checkfirst=True)
            table.create(conn)
            if data.num_rows:
                conn.execute(table.insert(), data.to_pylist())
    engine.dispose()


def _fixture_tables() -> dict[str, pa.Table]:
    patients = pa.table({name: [row[i] for row in PATIENTS] for i, name in enumerate(("pid", "nhs_number", "note"))})
    events = pa.table(
        {
            "pid": [pid for pid, _ in EVENTS],
            "nhs": pa.array([number for _, number in EVENTS], pa.int64()),
            "happened": pa.array([datetime(2024, 1, day + 1) for day in range(len(EVENTS))], pa.timestamp("ms")),
            "score": pa.array([1.5, 2.0, None, 4.25, 5.0], pa.float32()),
        }
    )
    notes = pa.table({"pid": list(NOTES), "text": [f"note {i}" for i in range(len(NOTES))]})
    return {"patients": patients, "events": events, "notes": notes}


def _spec(tmp_path: Path, url: str, text: str = SQL_SPEC) -> Path:
    path = tmp_path / "specs" / "sql-spec.yaml"  # out of the way of the output folders
    path.parent.mkdir(exist_ok=True)
    path.write_text(text.replace("{url}", url))
    return path


def _rows(url: str, table: str, column: str) -> list[Any]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        values = [row[0] for row in conn.execute(sa.text(f"SELECT {column} FROM {table}"))]
    engine.dispose()
    return sorted(values)


def _counts(manifest: Manifest) -> tuple[object, ...]:
    return tuple(replace(t, sha256=None, file="", format="") for t in manifest.tables), manifest.people_removed


@pytest.fixture
def db_url(sql_url: str) -> str:
    """The shared extract loaded into a fresh SQLite file, DuckDB file or PostgreSQL database."""
    _load(sql_url, _fixture_tables())
    return sql_url


def test_sql_engine_matches_the_file_engine(db_url: str, tmp_path: Path) -> None:
    files = run_filter(load_spec(write_extract(tmp_path / "in")), tmp_path / "files", check_result())
    manifest = run_filter(load_spec(_spec(tmp_path, db_url)), tmp_path / "sql", check_result())
    assert _counts(manifest) == _counts(files)
    assert manifest.engine == "sql" and read_manifest(tmp_path / "sql") == manifest
    assert sorted(p.name for p in (tmp_path / "sql").iterdir()) == ["manifest.json"]
    assert _rows(db_url, "patients_optout", "pid") == ["p1", "p2", "p9", "p9"]
    file_events = pq.read_table(tmp_path / "files" / "events.parquet")["pid"].to_pylist()
    assert _rows(db_url, "events_optout", "pid") == sorted(file_events)
    assert _rows(db_url, "notes_out", "pid") == ["p1", "p9"]
    assert manifest.table("notes").file == "notes_out" and manifest.table("notes").format == "table"


def test_outputs_are_replaced_whole_and_hashed_by_content(db_url: str, tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path, db_url))
    first = run_filter(spec, tmp_path / "one", check_result())
    second = run_filter(spec, tmp_path / "two", check_result())
    assert [t.sha256 for t in first.tables] == [t.sha256 for t in second.tables]
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        table = dialect_for(conn).table(conn, "patients_optout")
        assert content_hash(conn, table) == (4, first.table("patients").sha256)
        conn.execute(sa.text("UPDATE patients_optout SET note = 'changed' WHERE pid = 'p2'"))
        assert content_hash(conn, table)[1] != first.table("patients").sha256
        names = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert not [name for name in names if name.startswith("optout_")]  # no staging or half-built table left


def test_a_failing_run_writes_nothing(db_url: str, tmp_path: Path) -> None:
    run_filter(load_spec(_spec(tmp_path, db_url)), tmp_path / "out", check_result())
    before = _rows(db_url, "patients_optout", "pid")
    broken = SQL_SPEC.replace("pid\n    output: notes_out", "no_such_column\n    output: notes_out")
    with pytest.raises(InputError, match="no_such_column"):
        run_filter(load_spec(_spec(tmp_path, db_url, broken)), tmp_path / "out2", check_result())
    assert _rows(db_url, "patients_optout", "pid") == before
    assert not (tmp_path / "out2").exists()


def test_direct_care_copies_tables_unfiltered(db_url: str, tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path, db_url, SQL_SPEC.replace("research", "direct_care")))
    manifest = run_filter(spec, tmp_path / "out", None)
    assert not manifest.filtered and manifest.table("patients").rows_out == len(PATIENTS)
    assert len(_rows(db_url, "patients_optout", "pid")) == len(PATIENTS)


PSEUDO_SPEC = """\
name: pseudonymised
purpose: research
tables:
  - name: visits
    table: visits
    connection: {url}
    nhs_number: token
    person_key: pid
    pseudonymised: {scheme: hmac-sha256, key_env: OPTOUT_TEST_PSEUDO_KEY}
"""


def _tokens(secret: str) -> pa.Table:
    hexes = hex_digests(hash_numbers(np.asarray(N, dtype=np.int64), Key(secret))).to_pylist()
    tokens = [hexes[0], hexes[1].upper(), hexes[6], hexes[8], None, "not-a-hash", f" {hexes[2]} ", hexes[2]]
    return pa.table({"pid": [f"p{i}" for i in range(len(tokens))], "token": tokens})


@pytest.mark.parametrize("engine", ["files", "frames", "sql"])
def test_pseudonymised_ids_are_matched_under_the_key(
    engine: str, sql_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPTOUT_TEST_PSEUDO_KEY", SECRET)
    if engine == "sql":
        _load(sql_url, {"visits": _tokens(SECRET)})
        spec_path = _spec(tmp_path, sql_url, PSEUDO_SPEC)
    else:
        folder = tmp_path / "in"
        folder.mkdir()
        pa.csv.write_csv(_tokens(SECRET), folder / "visits.csv")
        spec_path = folder / "spec.yaml"
        spec_path.write_text(PSEUDO_SPEC.replace("table: visits\n    connection: {url}", "path: visits.csv"))
    frames = {"visits": _tokens(SECRET).to_pandas()} if engine == "frames" else None
    manifest = run_filter(load_spec(spec_path), tmp_path / "out", check_result(), frames=frames)
    assert manifest.table("visits").removed == {
        "opted_out": 1,
        "unchecked": 1,
        "bad_check_digit": 0,
        "malformed": 1,
        "missing": 1,
        "person_removed": 0,
    }
    assert manifest.table("visits").rows_out == 4
    assert SECRET not in (tmp_path / "out" / "manifest.json").read_text()


def test_wrong_key_stops_before_anything_is_written(
    sql_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _load(sql_url, {"visits": _tokens("the data controller's real key")})
    monkeypatch.setenv("OPTOUT_TEST_PSEUDO_KEY", SECRET)
    with pytest.raises(PseudonymKeyError, match="OPTOUT_TEST_PSEUDO_KEY") as raised:
        run_filter(load_spec(_spec(tmp_path, sql_url, PSEUDO_SPEC)), tmp_path / "out", check_result())
    assert SECRET not in str(raised.value)
    engine = sa.create_engine(sql_url)
    assert "visits_optout" not in sa.inspect(engine).get_table_names()
    engine.dispose()


def test_spec_refuses_mixed_homes_and_missing_connection(tmp_path: Path) -> None:
    mixed = SPEC + "  - {name: more, table: more, connection: 'sqlite:///x.db', person_key: pid}\n"
    with pytest.raises(InputError, match="same database"):
        load_spec(write_extract(tmp_path / "a", mixed))
    lonely = "name: x\npurpose: research\ntables:\n  - {name: t, table: t, nhs_number: n}\n"
    with pytest.raises(InputError, match="needs a connection"):
        load_spec(write_extract(tmp_path / "b", lonely))
    airflow_id = "name: x\npurpose: research\ntables:\n  - {name: t, table: t, connection: warehouse, nhs_number: n}\n"
    with pytest.raises(InputError, match="only be read inside Airflow"):
        run_filter(load_spec(write_extract(tmp_path / "c", airflow_id)), tmp_path / "out", check_result())


def _messy_values() -> list[str | None]:
    """Text the way extracts carry NHS numbers, each form twice: clean, spaced, dashed, padded, broken."""
    rng = np.random.default_rng(6)
    numbers = [int(n) for n in N] + [int(n) + 1 for n in N]  # valid, cleared or not, and bad check digits
    forms: list[str | None] = []
    for number in numbers:
        text = f"{number:010d}"
        forms += [text, f" {text[:3]} {text[3:6]} {text[6:]} ", f"{text[:3]}-{text[3:6]}-{text[6:]}", f"\t{text}\n"]
        forms += [f"{text}.0", f"{text}.00", f"{text}.5", f"\u00a0{text}", f"{text[:9]}", f"{text}1"]
        forms.append(f"{text[:5]}\u000b{text[5:]}")
    forms += ["", "  ", None, "NULL", "n/a", "Unknown", "not known", "-", "0000000000", "9999999999", "abc", "9.4e9"]
    forms += ["0123456789", "1e10", "+" + str(N[0]), str(-int(N[0]))]
    order = rng.permutation(len(forms))
    return [forms[i] for i in order]


@pytest.mark.parametrize(
    ("kind", "values"),
    [
        ("text", _messy_values()),
        ("integer", [int(n) for n in N] + [int(N[0]) + 1, 123, -int(N[0]), 0, 1111111111, 99_999_999_999, None]),
        ("float", [float(n) for n in N] + [float(N[1]) + 0.5, 1e3, None, 2222222222.0, -float(N[2])]),
    ],
)
def test_numbers_are_normalised_in_sql_as_in_python(kind: str, values: list[Any], sql_url: str, tmp_path: Path) -> None:
    arrow_type = {"text": pa.string(), "integer": pa.int64(), "float": pa.float64()}[kind]
    data = pa.table({"rid": [f"r{i}" for i in range(len(values))], "nhs": pa.array(values, arrow_type)})
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(data, folder / "values.parquet")
    text = "name: v\npurpose: research\ntables:\n  - {name: values, %s, nhs_number: nhs, person_key: rid}\n"
    (folder / "spec.yaml").write_text(text % "path: values.parquet")
    files = run_filter(load_spec(folder / "spec.yaml"), tmp_path / "files", check_result())
    types = {pa.string(): sa.Text, pa.int64(): sa.BigInteger, pa.float64(): sa.Double}  # DuckDB FLOAT is 32-bit
    engine = sa.create_engine(sql_url)
    with engine.begin() as conn:
        table = sa.Table("vals", sa.MetaData(), sa.Column("rid", sa.Text), sa.Column("nhs", types[arrow_type]))
        table.create(conn)
        conn.execute(table.insert(), data.to_pylist())
    engine.dispose()
    spec_path = _spec(tmp_path, sql_url, text % f"table: vals, connection: '{sql_url}'")
    manifest = run_filter(load_spec(spec_path), tmp_path / "sql", check_result())
    assert _counts(manifest) == _counts(files)
    kept = pq.read_table(tmp_path / "files" / "values.parquet")["rid"].to_pylist()
    assert _rows(sql_url, "values_optout", "rid") == sorted(kept)


def test_airflow_connection_ids_name_the_warehouse_and_the_key(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optout.airflow.hooks.connections import airflow_resolver

    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", pg_url.replace("postgresql+psycopg2://", "postgres://"))
    monkeypatch.setenv("AIRFLOW_CONN_PSEUDO_KEY", json.dumps({"conn_type": "generic", "password": SECRET}))
    _load(pg_url, {"visits": _tokens(SECRET)})
    text = PSEUDO_SPEC.replace("key_env: OPTOUT_TEST_PSEUDO_KEY", "key_conn: pseudo_key").replace("{url}", "warehouse")
    spec = load_spec(_spec(tmp_path, pg_url, text))
    with pytest.raises(InputError, match="only be read inside Airflow"):  # outside Airflow: a clear error
        run_filter(spec, tmp_path / "out", check_result())
    manifest = run_filter(spec, tmp_path / "out", check_result(), resolver=airflow_resolver())
    assert manifest.table("visits").rows_out == 4


def test_the_proof_proves_the_tables_and_catches_a_change(db_url: str, tmp_path: Path) -> None:
    from datetime import UTC, timedelta

    from optout.homes import home_for
    from optout.proof import prove

    spec = load_spec(_spec(tmp_path, db_url))
    run_filter(spec, tmp_path / "out", check_result())

    def faults() -> dict[str, set[str]]:
        """Per table, the counts of the one proof that are not clean (freshness is test_validation's)."""
        used = check_result()
        proof = prove(
            home_for(spec), tmp_path / "out", read_manifest(tmp_path / "out"), used,
            current=used.info, now=datetime.now(UTC), max_age=timedelta(days=365),
        )  # fmt: skip
        clean = {"hash_ok": True, "version_matches": True}
        skip = ("table", "rows", "list_fresh_at_filter", "list_is_current")
        return {
            row["table"]: {k for k, v in row.items() if k not in skip and v != clean.get(k, 0)}
            for row in proof.rows
            if any(k not in skip and v != clean.get(k, 0) for k, v in row.items())
        }

    assert faults() == {}
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:  # someone slips an opted-out person's row into the output
        conn.execute(
            sa.text("INSERT INTO patients_optout (pid, nhs_number, note) VALUES ('p3', :n, 'x')"), {"n": str(N[6])}
        )
    engine.dispose()
    assert faults() == {
        "patients": {"hash_ok", "rows_mismatch", "uncleared_number_rows", "removed_person_rows", "leaked_values"}
    }


def test_a_duckdb_query_cannot_reach_the_workers_files(tmp_path: Path) -> None:
    """DuckDB runs inside the worker: a spec's query may not read its files (nor write any)."""
    url = f"duckdb:///{tmp_path / 'extract.duckdb'}"
    _load(url, _fixture_tables())
    secret = tmp_path / "airflow.cfg"
    secret.write_text("fernet_key = not-for-extracts\n")
    text = SQL_SPEC.replace("SELECT pid, nhs, happened, score FROM events", f"SELECT * FROM read_text('{secret}')")
    with pytest.raises(InputError, match="the query does not run: PermissionException"):
        run_filter(load_spec(_spec(tmp_path, url, text)), tmp_path / "out", check_result())
    assert not (tmp_path / "out").exists()
    engine = sa.create_engine(url)  # an engine made elsewhere: the run's own setting holds
    spec = load_spec(_spec(tmp_path, url, text))
    with pytest.raises(InputError, match="PermissionException"):
        run_filter(spec, tmp_path / "out", check_result(), home=home_for(spec, database=engine))
    engine.dispose()
