"""The Spark engine on a real Spark Connect server: the file engine's manifest, both join paths, no leak.

Differential: the same extracts (messy text numbers, integer numbers with nulls, a key-only table,
opted-out people in several tables) go through the file engine and the Spark engine, with the list
joined by broadcast and by shuffle; the manifests' counts must be equal and no output may hold a
number that is not cleared, in any column.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from optout.clearance import KEEP, Clearance
from optout.errors import InputError
from optout.filter import run_filter
from optout.homes.spark_session import SparkEngineError
from optout.manifest import Manifest, read_manifest
from optout.nhs_number import normalise
from optout.pseudonym import PseudonymClearance, load_key
from optout.spec import load_spec
from tests.unit.filter_data import BAD_DIGIT, check_result, make_check_result, valid_numbers, write_extract

pytestmark = [pytest.mark.integration, pytest.mark.slow]
JOINS = ("broadcast", "shuffle")


def _counts(manifest: Manifest) -> tuple[object, ...]:
    tables = tuple(replace(t, sha256=None, file="", format="") for t in manifest.tables)
    return tables, manifest.people_removed


def _spark_spec(spec_path: Path, *, connection: str | None = None, tables: dict[str, str] | None = None) -> Path:
    """The same spec with ``engine: spark`` (and tables named instead of paths, when given)."""
    text = spec_path.read_text().replace("tables:\n", "engine: spark\ntables:\n", 1)
    for name, table in (tables or {}).items():
        text = text.replace(f"path: {name}.csv", f"table: {table}").replace(f"path: {name}.parquet", f"table: {table}")
    if connection:
        text = re.sub(r"(  - name: .*\n)", rf"\1    connection: {connection}\n", text)
    target = spec_path.with_name("spark-spec.yaml")
    target.write_text(text)
    return target


def _read_output(path: Path) -> pa.Table:
    """A Spark output folder (Parquet or CSV parts) as one Arrow table, every CSV column as text."""
    if path.suffix == ".parquet":
        return pq.read_table(path)
    parts = sorted(path.glob("part-*"))
    read = [pacsv.read_csv(part, parse_options=pacsv.ParseOptions(newlines_in_values=True)) for part in parts]
    tables = [t.cast(pa.schema([(f.name, pa.string()) for f in t.schema])) for t in read if t.num_columns]
    return pa.concat_tables(tables) if tables else pa.table({})


def _assert_no_leak(out_dir: Path, spec_path: Path, result: object) -> None:
    """No declared number column holds an uncleared number (a pseudonymised one: an id of no cleared
    person, under its key); no cell anywhere holds an opted-out number."""
    spec = load_spec(spec_path)
    opted_out = set(np.setdiff1d(result.cohort, result.cleared).tolist())  # type: ignore[attr-defined]
    for table in spec.tables:
        data = _read_output(out_dir / table.output_name)
        clearance: Any = Clearance(result)  # type: ignore[arg-type]
        if table.pseudonymised is not None:
            clearance = PseudonymClearance(result, load_key(table.pseudonymised))  # type: ignore[arg-type]
        if table.nhs_number and data.num_rows:
            assert (clearance.codes(data.column(table.nhs_number)) == KEEP).all(), table.name
        for name in data.column_names:
            numbers = normalise(data.column(name).cast(pa.string()))
            assert not opted_out & set(numbers.numbers[numbers.valid].tolist()), (table.name, name)


@pytest.fixture(params=JOINS)
def join(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPTOUT_SPARK_JOIN", request.param)
    return str(request.param)


def both_engines(spec_path: Path, tmp_path: Path, url: str, result: Any = None) -> tuple[Path, Manifest]:
    """Filter ``spec_path`` with the file engine (into ``files``) and the Spark engine (into ``spark``)
    against ``result`` (default: the shared check result); assert equal counts and what the exemptions
    kept; return the Spark spec and manifest."""
    result = check_result() if result is None else result
    files = run_filter(load_spec(spec_path), tmp_path / "files", result)
    spark_spec = _spark_spec(spec_path, connection=url)
    manifest = run_filter(load_spec(spark_spec), tmp_path / "spark", result)
    assert _counts(manifest) == _counts(files)
    assert manifest.kept == files.kept
    return spark_spec, manifest


def test_the_shared_extract_matches_the_file_engine(spark_connect_url: str, tmp_path: Path) -> None:
    spark_spec, manifest = both_engines(write_extract(tmp_path / "in"), tmp_path, spark_connect_url)
    assert manifest.engine == "spark" and read_manifest(tmp_path / "spark") == manifest
    assert {t.format for t in manifest.tables} == {"spark-csv", "spark-parquet"}
    _assert_no_leak(tmp_path / "spark", spark_spec, check_result())
    assert sorted(_read_output(tmp_path / "spark" / "patients.csv").column("pid").to_pylist()) == [
        "p1",
        "p2",
        "p9",
        "p9",
    ]


# ----------------------------------------------------------------------------------------- messy data

MESSY_SPEC = """\
name: messy extract
purpose: research
tables:
  - name: people
    path: people.csv
    nhs_number: nhs_number
    person_key: person
  - name: visits
    path: visits.parquet
    nhs_number: nhs
    person_key: person
  - name: letters
    path: letters.parquet
    person_key: person
  - name: referrals
    path: referrals.csv
    nhs_number: nhs_number
"""


def _messy(number: int, rng: random.Random) -> str:
    text = str(number)
    forms = [
        text,
        f" {text[:3]} {text[3:6]} {text[6:]} ",
        f"{text[:3]}-{text[3:6]}-{text[6:]}",
        f"\t{text}\u00a0",
        f"{text}.0",
        f"{text}.000",
        f"{text[:3]}\u00a0{text[3:6]}\u00a0{text[6:]}",
    ]
    return rng.choice(forms)


def _write_messy(folder: Path, rng: random.Random) -> tuple[Path, object]:
    """Four tables of 600 people: most cleared, some opted out (in several tables), unchecked, broken."""
    folder.mkdir(parents=True, exist_ok=True)
    numbers = valid_numbers(700, start=999_100_000)
    cohort, cleared = numbers[:650], np.concatenate([numbers[:560], numbers[600:650][::2]])
    result = make_check_result(cohort, cleared, version=11)
    broken = ["", "null", "N/A", "0000000000", "1111111111", "12345", "abcdefghij", "99912345678", str(BAD_DIGIT)]
    broken += ["+999100000", " 999100000", "0999100000", "999100000 ", "999100000."]  # ten characters, not ten digits
    people, visits, letters, referrals = [], [], [], []
    for index in range(600):
        person = f" P{index:04d} " if index % 7 == 0 else f"P{index:04d}"
        number = int(numbers[index]) if index < 590 else int(numbers[650 + index % 50])
        text = _messy(number, rng) if index % 31 else rng.choice(broken)
        people.append((person, text, f"note, {index}\nsecond line"))
        for visit in range(index % 3):
            value = None if (index + visit) % 17 == 0 else (number if visit == 0 else int(numbers[(index * 7) % 650]))
            visits.append((person.strip(), value, float(visit)))
        if index % 4 == 0:
            letters.append((person.strip() if index % 8 else "", f"letter {index}"))
        referrals.append((_messy(int(numbers[(index * 3) % 700]), rng), f"ref {index}"))
    letters.append(("P9999", "never seen beside a number"))
    pacsv.write_csv(
        pa.table({n: [r[i] for r in people] for i, n in enumerate(("person", "nhs_number", "text"))}),
        folder / "people.csv",
    )
    pq.write_table(
        pa.table(
            {
                "person": [v[0] for v in visits],
                "nhs": pa.array([v[1] for v in visits], pa.int64()),
                "cost": [v[2] for v in visits],
            }
        ),
        folder / "visits.parquet",
    )
    pq.write_table(
        pa.table({"person": [r[0] for r in letters], "body": [r[1] for r in letters]}), folder / "letters.parquet"
    )
    pacsv.write_csv(
        pa.table({"nhs_number": [r[0] for r in referrals], "text": [r[1] for r in referrals]}), folder / "referrals.csv"
    )
    spec = folder / "spec.yaml"
    spec.write_text(MESSY_SPEC)
    return spec, result


def test_messy_extract_matches_the_file_engine(spark_connect_url: str, join: str, tmp_path: Path) -> None:
    spec_path, result = _write_messy(tmp_path / "in", random.Random(18))
    files = run_filter(load_spec(spec_path), tmp_path / "files", result)  # type: ignore[arg-type]
    spark_spec = _spark_spec(spec_path, connection=spark_connect_url)
    manifest = run_filter(load_spec(spark_spec), tmp_path / "spark", result)  # type: ignore[arg-type]
    assert _counts(manifest) == _counts(files)
    assert manifest.rows_removed > 50 and manifest.people_removed_total > 20
    _assert_no_leak(tmp_path / "spark", spark_spec, result)


def test_spark_tables_are_filtered_into_tables_renamed_into_place(
    spark, spark_connect_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    spec_path = write_extract(tmp_path / "in")
    files = run_filter(load_spec(spec_path), tmp_path / "files", check_result())
    names = {"patients": "t18_patients", "events": "t18_events", "notes": "t18_notes"}
    folder = tmp_path / "in"
    reads = {
        "patients": spark.read.options(header=True, multiLine=True, escape='"').csv(str(folder / "patients.csv")),
        "events": spark.read.parquet(str(folder / "events.parquet")),
        "notes": spark.read.options(header=True).csv(str(folder / "notes.csv")),
    }
    for name, frame in reads.items():
        frame.write.mode("overwrite").saveAsTable(names[name])
    spark_spec = _spark_spec(spec_path, connection=spark_connect_url, tables=names)
    first = run_filter(load_spec(spark_spec), tmp_path / "one", check_result())
    assert _counts(first) == _counts(files)
    assert {t.format for t in first.tables} == {"spark-table"}
    assert sorted(r[0] for r in spark.table("patients_optout").select("pid").collect()) == ["p1", "p2", "p9", "p9"]
    second = run_filter(load_spec(spark_spec), tmp_path / "two", check_result())  # replaces the outputs
    assert [t.sha256 for t in second.tables] == [t.sha256 for t in first.tables]
    left = [r.tableName for r in spark.sql("SHOW TABLES").collect() if "__optout_" in r.tableName]
    assert not left
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["manifest.json"]


def test_a_query_that_does_not_only_read_or_does_not_run_is_refused(spark_connect_url: str, tmp_path: Path) -> None:
    """A ``query:`` that is not one SELECT is refused when the spec loads (as for SQL databases); one Spark
    cannot run is refused before anything is written, naming the table's query, never Spark's message."""
    spark_spec = _spark_spec(write_extract(tmp_path / "in"), connection=spark_connect_url)
    text = spark_spec.read_text()
    spark_spec.write_text(text.replace("path: patients.csv", "query: DROP TABLE t18_patients"))
    with pytest.raises(InputError, match="a query may only read"):
        load_spec(spark_spec)
    spark_spec.write_text(text.replace("path: patients.csv", "query: SELECT * FROM t18_no_such_table"))
    with pytest.raises(InputError, match="the Spark SQL query does not run") as raised:
        run_filter(load_spec(spark_spec), tmp_path / "out", check_result())
    assert raised.value.field == "patients.query" and "t18_no_such_table" not in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_a_failed_broadcast_fails_closed_and_writes_nothing(
    spark, spark_connect_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    spec_path = write_extract(tmp_path / "in")
    monkeypatch.setenv("OPTOUT_SPARK_JOIN", "broadcast")
    spark.conf.set("spark.sql.maxBroadcastTableSize", "16b")
    try:
        with pytest.raises(SparkEngineError, match="broadcast"):
            run_filter(
                load_spec(_spark_spec(spec_path, connection=spark_connect_url)), tmp_path / "out", check_result()
            )
    finally:
        spark.conf.unset("spark.sql.maxBroadcastTableSize")
    assert not (tmp_path / "out").exists()


def test_the_list_is_staged_once_per_version(spark: Any, tmp_path: Path) -> None:
    from optout.homes.spark_session import list_location, staged_list

    first = staged_list(spark, check_result(21))
    folder = Path(list_location())
    written = sorted(p.stat().st_mtime_ns for p in folder.rglob("*.parquet"))
    again = staged_list(spark, check_result(21))
    assert sorted(p.stat().st_mtime_ns for p in folder.rglob("*.parquet")) == written
    assert again.count() == first.count() == len(check_result().cohort)
    assert [p.name[:4] for p in folder.iterdir()] == ["v21_"]


def run_classic(spark_spec: Path, out_dir: Path, home: Path, then: str = "") -> tuple[Manifest, str]:
    """Filter ``spark_spec`` (no connection) against the shared check result in a local classic session,
    in a process of its own (one mode per process), then run ``then`` there (Python: ``manifest`` is the
    run's); return the manifest and what the process printed."""
    script = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from optout.filter import run_filter
from optout.spec import load_spec
from tests.unit.filter_data import check_result
manifest = run_filter(load_spec({str(spark_spec)!r}), {str(out_dir)!r}, check_result())
{then}
"""
    env = {key: value for key, value in os.environ.items() if key not in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE")}
    env |= {"OPTOUT_HOME": str(home), "OPTOUT_SPARK_DRIVER_MEMORY": "512m", "SPARK_LOCAL_IP": "127.0.0.1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return read_manifest(out_dir), done.stdout


def test_classic_pyspark_runs_the_same_code(tmp_path: Path) -> None:
    """Without a connection: a local classic session. A Java error PySpark does not convert (a Parquet
    file that is not one: py4j's ``Py4JJavaError``) fails closed as Spark Connect's errors do: one
    SparkEngineError naming the class, nothing written."""
    spec_path = write_extract(tmp_path / "in")
    files = run_filter(load_spec(spec_path), tmp_path / "files", check_result())
    spark_spec = _spark_spec(spec_path)
    then = f"""
from optout.homes.spark_session import SparkEngineError
open({str(tmp_path / "in" / "events.parquet")!r}, "wb").write(b"PAR1" + bytes(100) + b"PAR1")
try:
    run_filter(load_spec({str(spark_spec)!r}), {str(tmp_path / "broken")!r}, check_result())
except SparkEngineError as exc:
    print(json.dumps({{"refused": str(exc)}}))
"""
    manifest, printed = run_classic(spark_spec, tmp_path / "spark", tmp_path / "home", then)
    assert manifest.engine == "spark" and _counts(manifest) == _counts(files)
    refused = json.loads(printed.strip().splitlines()[-1])["refused"]
    assert refused.startswith("Spark refused") and "nothing was written" in refused
    assert not (tmp_path / "broken").exists()
