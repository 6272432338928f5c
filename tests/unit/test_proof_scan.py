"""The proof scans every cell of every output, whatever the spec declares: a number the filter never looked
at still fails the proof, named by table and column, and no artefact of the proof holds a number."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from filter_data import make_check_result

from optout.filter import run_filter
from optout.input_scan import InputScan, UndeclaredNumbers
from optout.nhs_number import synthetic
from optout.spec import ExtractSpec, load_spec
from optout.store import CheckResult
from optout.validation import run_validation, validation_dir

pytestmark = pytest.mark.slow
NUMBERS = synthetic(8)
CLEARED, OPTED_OUT = NUMBERS[:6], NUMBERS[6:]
NOW = datetime.now(UTC)


def spaced(number: int) -> str:
    text = f"{number:010d}"
    return f"{text[:3]} {text[3:6]} {text[6:]}"


def parquet_notes(src: Path) -> str:
    notes = ["ok"] * 6
    notes[2] = f"mother's NHS number {OPTED_OUT[0]}"  # a kept row: its own number is cleared
    pq.write_table(pa.table({"nhs_number": CLEARED, "notes": notes}), src / "events.parquet")
    return "{name: events, path: events.parquet, nhs_number: nhs_number}"


def parquet_cleared_next_of_kin(src: Path) -> str:
    kin = [spaced(int(n)) for n in CLEARED[::-1]]
    pq.write_table(pa.table({"nhs_number": CLEARED, "next_of_kin": kin}), src / "events.parquet")
    return "{name: events, path: events.parquet, nhs_number: nhs_number}"


def parquet_list_column(src: Path) -> str:
    linked = [[int(CLEARED[0])]] * 5 + [[int(CLEARED[1]), int(OPTED_OUT[1])]]
    pq.write_table(pa.table({"nhs_number": CLEARED, "linked": linked}), src / "events.parquet")
    return "{name: events, path: events.parquet, nhs_number: nhs_number}"


def csv_spaced_kin(src: Path) -> str:
    with open(src / "events.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["nhs_number", "kin"])
        for index, number in enumerate(CLEARED):
            writer.writerow([f"{number:010d}", spaced(int(OPTED_OUT[0])) if index == 4 else ""])
    return "{name: events, path: events.csv, nhs_number: nhs_number}"


def key_only_table_with_numbers(src: Path) -> str:
    people = [f"p{i}" for i in range(6)]
    pq.write_table(pa.table({"nhs_number": CLEARED, "person_id": people}), src / "events.parquet")
    # Declares only a person key, yet carries a number: an opted-out person's, beside a cleared key.
    numbers = [str(n) for n in CLEARED]
    numbers[3] = str(OPTED_OUT[1])
    pq.write_table(pa.table({"person_id": people, "nhs": numbers}), src / "contacts.parquet")
    return (
        "{name: events, path: events.parquet, nhs_number: nhs_number, person_key: person_id}\n"
        "  - {name: contacts, path: contacts.parquet, person_key: person_id}"
    )


def link_table_with_a_second_number(src: Path) -> str:
    people = [f"p{i}" for i in range(6)]
    previous = [None, str(OPTED_OUT[0]), None, None, None, None]  # the link says p1 is cleared; not all of it
    pq.write_table(
        pa.table({"nhs_number": CLEARED, "person_id": people, "previous_nhs_number": previous}), src / "link.parquet"
    )
    pq.write_table(pa.table({"person_id": people, "code": ["a"] * 6}), src / "events.parquet")
    return (
        "{name: link, path: link.parquet, nhs_number: nhs_number, person_key: person_id}\n"
        "  - {name: events, path: events.parquet, person_key: person_id}"
    )


def parquet_schema_carries_a_number(src: Path, where: str) -> str:
    """Nothing in any cell: the number is in a column's name, a nested field's name, or the footer's metadata."""
    number = str(OPTED_OUT[0])
    columns: dict[str, pa.Array] = {"nhs_number": pa.array(CLEARED), "notes": pa.array(["ok"] * 6)}
    if where == "column name":
        columns[number] = pa.array(range(6))
    if where == "nested field name":
        columns["linked"] = pa.array([{number: 1}] * 6)
    table = pa.table(columns)
    if where == "footer metadata":
        table = table.replace_schema_metadata({"note": f"extracted for {number}"})
    if where == "field metadata":
        table = table.cast(table.schema.set(1, table.schema.field(1).with_metadata({"about": number})))
    pq.write_table(table, src / "events.parquet")
    return "{name: events, path: events.parquet, nhs_number: nhs_number}"


def parquet_column_named_by_number(src: Path) -> str:
    return parquet_schema_carries_a_number(src, "column name")


def parquet_nested_field_named_by_number(src: Path) -> str:
    return parquet_schema_carries_a_number(src, "nested field name")


def parquet_footer_note(src: Path) -> str:
    return parquet_schema_carries_a_number(src, "footer metadata")


def parquet_field_metadata(src: Path) -> str:
    return parquet_schema_carries_a_number(src, "field metadata")


CASES: list[tuple[Callable[[Path], str], str | None]] = [
    (parquet_notes, "events.notes: 1"),
    (parquet_cleared_next_of_kin, None),
    (parquet_list_column, "events.linked: 1"),
    (csv_spaced_kin, "events.kin: 1"),
    (key_only_table_with_numbers, "contacts.nhs: 1"),
    (link_table_with_a_second_number, "link.previous_nhs_number: 1"),
]
SCHEMA_CASES = [
    parquet_column_named_by_number,
    parquet_nested_field_named_by_number,
    parquet_footer_note,
    parquet_field_metadata,
]


def filter_blind(spec: ExtractSpec, out: Path, result: CheckResult, found_at: str | None) -> None:
    """The filter refuses what its input scan finds; the proof must find it too, without that scan."""
    if found_at is not None:
        with pytest.raises(UndeclaredNumbers, match=re.escape(found_at)):
            run_filter(spec, out, result)
        assert not out.exists()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(InputScan, "require_clean", lambda self: None)  # a filter blind to undeclared columns
        run_filter(spec, out, result)


def _extract(tmp_path: Path, write: Callable[[Path], str]) -> tuple[ExtractSpec, Path, CheckResult]:
    """The spec of one table ``write`` makes, where its output goes, and a list that clears CLEARED."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "spec.yaml").write_text(f"name: scan\npurpose: research\ntables:\n  - {write(src)}\n")
    result = make_check_result(NUMBERS, CLEARED, version=3, checked_at=NOW)
    return load_spec(src / "spec.yaml"), tmp_path / "out", result


@pytest.mark.parametrize(("write", "found_at"), CASES, ids=[write.__name__ for write, _ in CASES])
def test_the_proof_finds_numbers_in_undeclared_columns(tmp_path: Path, write: Callable[[Path], str], found_at) -> None:  # type: ignore[no-untyped-def]
    spec, out, result = _extract(tmp_path, write)
    filter_blind(spec, out, result, found_at)
    proof = run_validation(spec, out, result, current=result.info, now=NOW)
    check = next(check for check in proof.checks if check.name == "no_uncleared_number")
    if found_at is None:
        assert proof.ok, proof.checks
    else:
        assert not check.ok and not proof.ok
        assert found_at in str(check.detail["found_at"])
        assert check.detail["uncleared_rows"] == 0  # the declared columns were clean: only the scan saw it
    written = b"".join(path.read_bytes() for path in validation_dir(out).rglob("*") if path.is_file())
    for number in NUMBERS:
        assert str(number).encode() not in written
    assert json.loads((validation_dir(out) / "result.json").read_text())["ok"] is (found_at is None)


@pytest.mark.parametrize("write", SCHEMA_CASES, ids=[write.__name__ for write in SCHEMA_CASES])
def test_the_proof_finds_numbers_in_names_and_metadata(tmp_path: Path, write: Callable[[Path], str]) -> None:
    """A Parquet output's column names and key-value metadata were never scanned: such an extract passed."""
    spec, out, result = _extract(tmp_path, write)
    run_filter(spec, out, result)
    proof = run_validation(spec, out, result, current=result.info, now=NOW)
    check = next(check for check in proof.checks if check.name == "no_uncleared_number")
    assert not check.ok and not proof.ok
    assert "events.(schema): 1" in str(check.detail["found_at"])
    written = b"".join(path.read_bytes() for path in validation_dir(out).rglob("*") if path.is_file())
    assert str(OPTED_OUT[0]).encode() not in written


def test_a_changed_schema_fails_the_proof(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    pq.write_table(pa.table({"nhs_number": CLEARED, "code": ["a"] * 6}), src / "events.parquet")
    (src / "spec.yaml").write_text(
        "name: s\npurpose: research\ntables:\n  - {name: events, path: events.parquet, nhs_number: nhs_number}\n"
    )
    result = make_check_result(NUMBERS, CLEARED, version=3, checked_at=NOW)
    spec = load_spec(src / "spec.yaml")
    run_filter(spec, tmp_path / "out", result)
    assert run_validation(spec, tmp_path / "out", result, current=result.info, now=NOW).ok
    # The input changes type under the extract (the output no longer matches it): the proof says so.
    pq.write_table(pa.table({"nhs_number": CLEARED.astype(np.float64), "code": ["a"] * 6}), src / "events.parquet")
    proof = run_validation(spec, tmp_path / "out", result, current=result.info, now=NOW)
    reconciles = next(check for check in proof.checks if check.name == "manifest_reconciles")
    assert not reconciles.ok and reconciles.detail["schemas_changed"] == 1


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_an_out_dir_that_is_a_file_or_a_link_is_refused_and_left_alone(tmp_path: Path, kind: str) -> None:
    from optout.errors import InputError

    src = tmp_path / "src"
    src.mkdir()
    pq.write_table(pa.table({"nhs_number": CLEARED}), src / "events.parquet")
    (src / "spec.yaml").write_text(
        "name: s\npurpose: research\ntables:\n  - {name: events, path: events.parquet, nhs_number: nhs_number}\n"
    )
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("keep me")
    else:
        (tmp_path / "elsewhere").mkdir()
        out.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InputError, match="output folder is"):
        run_filter(load_spec(src / "spec.yaml"), out, make_check_result(NUMBERS, CLEARED))
    assert out.read_text() == "keep me" if kind == "file" else out.is_symlink() and not any(out.iterdir())


def test_the_proof_scans_every_cell_of_database_tables(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path / 'x.db'}"
    with sqlite3.connect(tmp_path / "x.db") as conn:
        conn.execute("CREATE TABLE events (nhs_number TEXT, notes TEXT)")
        rows = [(str(n), f"kin {OPTED_OUT[0]}" if i == 1 else "ok") for i, n in enumerate(CLEARED)]
        conn.executemany("INSERT INTO events VALUES (?, ?)", [*rows, (str(OPTED_OUT[1]), "x")])
    (tmp_path / "spec.yaml").write_text(
        f"name: db\npurpose: research\ntables:\n  - {{name: events, table: events, connection: '{url}', "
        "nhs_number: nhs_number}\n"
    )
    result = make_check_result(NUMBERS, CLEARED, version=3, checked_at=NOW)
    spec = load_spec(tmp_path / "spec.yaml")
    filter_blind(spec, tmp_path / "out", result, "events.notes: 1")
    proof = run_validation(spec, tmp_path / "out", result, current=result.info, now=NOW)
    check = next(check for check in proof.checks if check.name == "no_uncleared_number")
    assert not check.ok and check.detail["uncleared_rows"] == 0
    assert "events.notes: 1" in str(check.detail["found_at"])
    assert check.detail["tables_scanned_cell_by_cell"] == 1
