"""The scans of Spark extracts, run in Spark on a real Spark Connect server, against the file engine's.

Uncleared NHS numbers are planted in columns the spec does not declare (free text, an integer column).
The input scan at filter time refuses the extract in both engines, naming the same columns and counts.
With that scan blinded the filter leaves them, and the proof must find every one, in Spark (every cell
of every column, only counts collected) exactly where the file engine's leak scan finds them, for folder
outputs and for Spark table outputs alike (one of them a Spark SQL query's); every other check of the
proof must pass.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from optout.filter import run_filter
from optout.input_scan import InputScan, UndeclaredNumbers
from optout.manifest import read_manifest
from optout.spec import load_spec
from optout.store import Store
from optout.validation import ValidationResult, run_validation
from tests.integration.test_spark_csv import _rewritten
from tests.integration.test_spark_engine import _spark_spec
from tests.unit.filter_data import N, spaced, write_extract

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _planted(folder: Path) -> Path:
    """The shared extract with uncleared numbers in undeclared columns of rows the filter keeps: N[7]
    (opted out) spaced and N[6] after letters in p1's note, N[7] in a new integer column and N[9]
    (never checked) in a new text column of p1's event; N[0] (cleared) and a number after a hex letter
    beside them are not leaks."""
    spec = write_extract(folder)
    patients = pacsv.read_csv(folder / "patients.csv", convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
    notes = patients.column("note").to_pylist()
    notes[0] = f"letter re{spaced(int(N[7]))}, ref NHS{N[6]}. cleared {N[0]}, hash ab{N[6]}"
    pacsv.write_csv(patients.set_column(2, "note", pa.array(notes)), folder / "patients.csv")
    events = pq.read_table(folder / "events.parquet")
    count = events.num_rows
    events = events.append_column("other", pa.array([int(N[7])] + [None] * (count - 1), pa.int64()))
    events = events.append_column("memo", pa.array([f"seen {N[9]}"] + [f"ok {N[0]}"] * (count - 1)))
    pq.write_table(events, folder / "events.parquet")
    return spec


def _store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    version = store.record_request(np.sort(N[:8]))
    store.import_reply(version.id, np.sort(N[:6]), checked_at=datetime.now(UTC) - timedelta(hours=1))
    return store


def _validate(spec_path: Path, out_dir: Path, store: Store) -> ValidationResult:
    manifest = read_manifest(out_dir)
    result = store.load(manifest.version_id)
    return run_validation(load_spec(spec_path), out_dir, result, current=store.current(), store_url=store.url)


def _found(result: ValidationResult, raw: bool) -> dict[str, str]:
    """Where the proof found leaks: ``{table.column: count}`` (with a CSV output's raw text, or without it:
    a Spark table has none)."""
    detail = next(check.detail for check in result.checks if check.name == "no_uncleared_number")
    found = [part.split(": ") for part in str(detail["found_at"]).split("; ") if part != "none"]
    return {where: count for where, count in found if raw or "(raw bytes)" not in where}


@pytest.mark.parametrize("outputs", ["folders", "utf-16 folders", "tables"])
def test_the_proof_in_spark_finds_what_the_file_scan_finds(
    spark: Any, spark_connect_url: str, outputs: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_path = _planted(tmp_path / "in")
    if outputs == "utf-16 folders":  # patients as tab-separated UTF-16 (BOM, CRLF): its output's text decoded
        lines = _rewritten(tmp_path / "in", "patients.csv", "\t", "utf-16", "\r\n")
        spec_path.write_text(spec_path.read_text().replace("    path: patients.csv\n", lines))
    store = _store(tmp_path)
    with pytest.raises(UndeclaredNumbers, match=r"events\.memo: 1 .*events\.other: 1 .*patients\.note: 2"):
        run_filter(load_spec(spec_path), tmp_path / "files", store.load())
    names = None
    if outputs == "tables":
        names = {"patients": "p18_patients", "events": "p18_events", "notes": "p18_notes"}
        folder = tmp_path / "in"
        csv = spark.read.options(header=True, multiLine=True, escape='"')
        csv.csv(str(folder / "patients.csv")).write.mode("overwrite").saveAsTable(names["patients"])
        spark.read.parquet(str(folder / "events.parquet")).write.mode("overwrite").saveAsTable(names["events"])
        csv.csv(str(folder / "notes.csv")).write.mode("overwrite").saveAsTable(names["notes"])
    spark_spec = _spark_spec(spec_path, connection=spark_connect_url, tables=names)
    if names:  # patients from a Spark SQL query: filtered and proved as a table is
        query = f"    query: SELECT pid, nhs_number, note FROM {names['patients']} WHERE pid IS NOT NULL\n"
        spark_spec.write_text(spark_spec.read_text().replace(f"    table: {names['patients']}\n", query))
    with pytest.raises(UndeclaredNumbers, match=r"events\.memo: 1 .*events\.other: 1 .*patients\.note: 2"):
        run_filter(load_spec(spark_spec), tmp_path / "spark", store.load())  # the input scan, in Spark
    monkeypatch.setattr(InputScan, "require_clean", lambda self: None)  # a filter whose scan is blinded
    run_filter(load_spec(spec_path), tmp_path / "files", store.load())
    by_files = _validate(spec_path, tmp_path / "files", store)
    run_filter(load_spec(spark_spec), tmp_path / "spark", store.load())
    in_spark = _validate(spark_spec, tmp_path / "spark", store)

    expected = {"patients.note": "2", "events.other": "1", "events.memo": "1"}
    if outputs != "tables":  # a CSV output's text is scanned too, as Spark wrote it
        expected["patients.(raw bytes)"] = "2"
    assert _found(by_files, raw=outputs != "tables") == _found(in_spark, raw=True) == expected
    for result in (by_files, in_spark):
        assert {check.name for check in result.checks if not check.ok} == {"no_uncleared_number"}
    detail = next(check.detail for check in in_spark.checks if check.name == "no_uncleared_number")
    assert detail["found_in_any_cell"] == sum(int(count) for count in expected.values())
    assert detail["uncleared_rows"] == 0


def test_an_output_column_named_with_an_uncleared_number_fails_the_spark_proof(
    spark_connect_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The names come from the output's schema on the driver (no row moves), scanned as the file proof
    scans a Parquet output's: a column named with an opted-out number carries it out as surely as a cell."""
    spec_path = write_extract(tmp_path / "in")
    events = pq.read_table(tmp_path / "in" / "events.parquet")
    events = events.append_column(f"score {N[7]}", pa.array(["x"] * events.num_rows))
    pq.write_table(events, tmp_path / "in" / "events.parquet")
    store = _store(tmp_path)
    monkeypatch.setattr(InputScan, "require_clean", lambda self: None)  # the filter's input scan is not the test
    run_filter(load_spec(spec_path), tmp_path / "files", store.load())
    spark_spec = _spark_spec(spec_path, connection=spark_connect_url)
    run_filter(load_spec(spark_spec), tmp_path / "spark", store.load())
    by_files = _validate(spec_path, tmp_path / "files", store)
    in_spark = _validate(spark_spec, tmp_path / "spark", store)
    assert _found(by_files, raw=False) == _found(in_spark, raw=False) == {"events.(schema)": "1"}
    assert {check.name for check in in_spark.checks if not check.ok} == {"no_uncleared_number"}
