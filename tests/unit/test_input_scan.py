"""The leak scan on the inputs' undeclared columns at filter time: an uncleared number outside the declared
columns refuses the extract (nothing written, table, column and count named, never the number); a column
is skipped only when the spec excludes it by name with a reason, and that shows in the manifest, the
ledger and the governance page. A table that carries numbers but declares only a person key, or a link
table, cannot let other tables through on the link's word alone."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from filter_data import make_check_result

from optout.errors import InputError
from optout.filter import run_filter
from optout.input_scan import ON_FINDING, UndeclaredNumbers
from optout.nhs_number import synthetic
from optout.spec import load_spec
from optout.validation import run_validation

NUMBERS = synthetic(8)
CLEARED, OPTED_OUT = NUMBERS[:6], NUMBERS[6:]
NOW = datetime.now(UTC)
RESULT = make_check_result(NUMBERS, CLEARED, version=3, checked_at=NOW)


def extract(tmp_path: Path, tables: dict[str, pa.Table], entries: list[str]) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for name, table in tables.items():
        pq.write_table(table, src / f"{name}.parquet")
    body = "".join(f"  - {entry}\n" for entry in entries)
    (src / "spec.yaml").write_text(f"name: scan\npurpose: research\ntables:\n{body}")
    return src / "spec.yaml"


def assert_refused(spec_path: Path, out: Path, where: str) -> None:
    with pytest.raises(UndeclaredNumbers) as refused:
        run_filter(load_spec(spec_path), out, RESULT)
    assert where in str(refused.value) and refused.value.exit_code == 1
    assert not any(str(number) in str(refused.value) for number in NUMBERS)
    assert not out.exists()


def test_an_uncleared_number_in_free_text_refuses_the_extract(tmp_path: Path) -> None:
    notes = ["ok", f"mother {OPTED_OUT[0]}", "ok", "ok", f"{OPTED_OUT[1]}", "ok"]
    spec = extract(
        tmp_path,
        {"events": pa.table({"nhs_number": CLEARED, "notes": notes})},
        ["{name: events, path: events.parquet, nhs_number: nhs_number}"],
    )
    assert_refused(spec, tmp_path / "out", "events.notes: 2 uncleared NHS number(s)")


def test_cleared_numbers_elsewhere_pass_and_the_manifest_says_what_the_scan_does(tmp_path: Path) -> None:
    kin = [int(n) for n in CLEARED[::-1]]
    spec = extract(
        tmp_path,
        {"events": pa.table({"nhs_number": NUMBERS, "next_of_kin": [*kin, int(CLEARED[0]), None]})},
        ["{name: events, path: events.parquet, nhs_number: nhs_number}"],
    )
    manifest = run_filter(load_spec(spec), tmp_path / "out", RESULT)
    scan = json.loads((tmp_path / "out" / "manifest.json").read_text())["input_scan"]
    assert scan == manifest.input_scan
    assert scan["on_uncleared_number"] == ON_FINDING and scan["uncleared_found"] == 0
    assert scan["columns_scanned"] == 1 and scan["excluded"] == []  # next_of_kin; the number column is the filter's


def test_an_excluded_column_is_skipped_on_input_and_output_and_shown(tmp_path: Path) -> None:
    notes = ["ok", f"mother {OPTED_OUT[0]}", "ok", "ok", "ok", "ok"]
    entry = (
        "{name: events, path: events.parquet, nhs_number: nhs_number, "
        "scan_exclude: [{column: notes, reason: 'free text reviewed by the IG team'}]}"
    )
    spec_path = extract(tmp_path, {"events": pa.table({"nhs_number": CLEARED, "notes": notes})}, [entry])
    spec = load_spec(spec_path)
    manifest = run_filter(spec, tmp_path / "out", RESULT)
    excluded = [{"table": "events", "column": "notes", "reason": "free text reviewed by the IG team"}]
    assert manifest.input_scan is not None and manifest.input_scan["excluded"] == excluded
    assert any("events.notes (free text reviewed" in line for line in manifest.summary_lines())
    assert run_validation(spec, tmp_path / "out", RESULT, current=RESULT.info, now=NOW).ok


def test_an_excluded_column_of_a_csv_is_excused_in_its_bytes_only(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rows = [f"{n},{'kin ' + str(OPTED_OUT[0]) if i == 1 else 'ok'},x" for i, n in enumerate(CLEARED)]
    (src / "events.csv").write_text("nhs_number,notes,code\n" + "\n".join(rows) + "\n")
    (src / "spec.yaml").write_text(
        "name: s\npurpose: research\ntables:\n  - {name: events, path: events.csv, nhs_number: nhs_number,"
        " scan_exclude: [{column: notes, reason: reviewed}]}\n"
    )
    spec = load_spec(src / "spec.yaml")
    run_filter(spec, tmp_path / "out", RESULT)
    assert run_validation(spec, tmp_path / "out", RESULT, current=RESULT.info, now=NOW).ok
    # A number in a column that is not excluded still fails the proof, in the bytes as in the column.
    written = re.sub(
        r'(,"?)x("?\n)', rf"\g<1>{OPTED_OUT[1]}\g<2>", (tmp_path / "out" / "events.csv").read_text(), count=1
    )
    (tmp_path / "out" / "events.csv").write_text(written)
    proof = run_validation(spec, tmp_path / "out", RESULT, current=RESULT.info, now=NOW)
    found = str(next(c for c in proof.checks if c.name == "no_uncleared_number").detail["found_at"])
    assert "events.code: 1" in found and "(raw bytes): 1" in found


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("scan_exclude: [{column: nhs_number, reason: r}]", "never excluded"),
        ("scan_exclude: [{column: notes}]", "reason"),
        ("scan_exclude: [{column: notes, reason: r}, {column: notes, reason: s}]", "excluded twice"),
        ("scan_exclude: notes", "expected a list"),
        ("scan_exclude: [{column: notes, reason: r, until: x}]", "unknown key"),
    ],
)
def test_an_exclusion_names_a_column_and_a_reason(tmp_path: Path, entry: str, message: str) -> None:
    spec = extract(
        tmp_path,
        {"events": pa.table({"nhs_number": CLEARED, "notes": ["x"] * 6})},
        [f"{{name: events, path: events.parquet, nhs_number: nhs_number, {entry}}}"],
    )
    with pytest.raises(InputError, match=message):
        load_spec(spec)


def test_a_key_only_table_carrying_numbers_cannot_pass_on_the_link_alone(tmp_path: Path) -> None:
    people = [f"p{i}" for i in range(6)]
    numbers = [str(n) for n in CLEARED]
    numbers[3] = str(OPTED_OUT[1])  # the link says p3 is cleared; this table says p3 is an opted-out person
    spec = extract(
        tmp_path,
        {
            "link": pa.table({"nhs_number": CLEARED, "person_id": people}),
            "contacts": pa.table({"person_id": people, "nhs": numbers}),
        },
        [
            "{name: link, path: link.parquet, nhs_number: nhs_number, person_key: person_id}",
            "{name: contacts, path: contacts.parquet, person_key: person_id}",
        ],
    )
    assert_refused(spec, tmp_path / "out", "contacts.nhs: 1 uncleared")


def test_a_link_table_mapping_a_key_to_a_second_number_cannot_clear_it(tmp_path: Path) -> None:
    """The link maps p1 to a cleared number, but another column of the link maps p1 to an opted-out one."""
    people = [f"p{i}" for i in range(6)]
    other = [None, str(OPTED_OUT[0]), None, None, None, None]
    spec = extract(
        tmp_path,
        {
            "link": pa.table({"nhs_number": CLEARED, "person_id": people, "previous_nhs_number": other}),
            "events": pa.table({"person_id": people, "code": ["a"] * 6}),
        },
        [
            "{name: link, path: link.parquet, nhs_number: nhs_number, person_key: person_id}",
            "{name: events, path: events.parquet, person_key: person_id}",
        ],
    )
    assert_refused(spec, tmp_path / "out", "link.previous_nhs_number: 1")


def test_dataframes_are_scanned_too(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "spec.yaml").write_text(
        "name: s\npurpose: research\ntables:\n  - {name: events, path: events.parquet, nhs_number: nhs_number}\n"
    )
    frame = pd.DataFrame({"nhs_number": CLEARED, "kin": [f"{OPTED_OUT[0]}"] + ["x"] * 5})
    with pytest.raises(UndeclaredNumbers, match=r"events\.kin: 1"):
        run_filter(load_spec(tmp_path / "src" / "spec.yaml"), tmp_path / "out", RESULT, frames={"events": frame})


def test_database_tables_are_scanned_before_anything_is_written(tmp_path: Path) -> None:
    import sqlite3

    with sqlite3.connect(tmp_path / "x.db") as conn:
        conn.execute("CREATE TABLE events (nhs_number TEXT, notes TEXT)")
        rows = [(str(n), f"kin {OPTED_OUT[0]}" if i == 1 else "ok") for i, n in enumerate(CLEARED)]
        conn.executemany("INSERT INTO events VALUES (?, ?)", rows)
    (tmp_path / "spec.yaml").write_text(
        f"name: db\npurpose: research\ntables:\n  - {{name: events, table: events, "
        f"connection: 'sqlite:///{tmp_path / 'x.db'}', nhs_number: nhs_number}}\n"
    )
    with pytest.raises(UndeclaredNumbers, match=r"events\.notes: 1"):
        run_filter(load_spec(tmp_path / "spec.yaml"), tmp_path / "out", RESULT)
    with sqlite3.connect(tmp_path / "x.db") as conn:
        assert [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["events"]


def test_the_ledger_and_the_page_show_an_exclusion_and_its_reason(tmp_path: Path) -> None:
    from optout.governance import overview, render
    from optout.ledger import Disclosure, Ledger

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    excluded = [{"table": "events", "column": "notes", "reason": "free text reviewed <by IG>"}]
    ledger = Ledger(url)
    sent = Disclosure("scan", "research", "Leeds", 3, NOW, 6, 6, {}, 0, True, {"events.parquet": "0" * 64})
    ledger.append(sent)
    entry = ledger.append(Disclosure(**{**sent.__dict__, "scan_excluded": excluded}))
    assert entry.disclosure.scan_excluded == excluded
    assert [e.disclosure.scan_excluded for e in ledger.entries()] == [None, excluded]
    assert ledger.verify()[0]
    ledger.dispose()
    html = render(overview(url, now=NOW))
    assert "not scanned for NHS numbers: events.notes (free text reviewed &lt;by IG&gt;)" in html
    with pytest.raises(InputError, match="scan_excluded"):
        Ledger(url).append(Disclosure(**{**sent.__dict__, "scan_excluded": [{"reason": f"{OPTED_OUT[0]}"}]}))
