"""`optout spec check SPEC`: undeclared number columns, key-only and unlinked tables, reported in counts and
column names (a number-like name hidden), never a value; exit 0 / 1 / 2."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from optout.cli import main
from optout.nhs_number import synthetic

NUMBERS = synthetic(6)
PEOPLE = [f"p{i}" for i in range(6)]


def spec(tmp_path: Path, tables: dict[str, pa.Table], entries: list[str]) -> Path:
    for name, table in tables.items():
        pq.write_table(table, tmp_path / f"{name}.parquet")
    body = "".join(f"  - {entry}\n" for entry in entries)
    (tmp_path / "spec.yaml").write_text(f"name: s\npurpose: research\ntables:\n{body}")
    return tmp_path / "spec.yaml"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["spec", "check", *args])
    captured = capsys.readouterr()
    everything = captured.out + captured.err
    assert not any(str(number) in everything for number in NUMBERS)  # counts and names only
    return code, everything


def test_a_clean_spec_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = spec(
        tmp_path,
        {"people": pa.table({"nhs_number": NUMBERS, "person_id": PEOPLE}), "events": pa.table({"person_id": PEOPLE})},
        [
            "{name: people, path: people.parquet, nhs_number: nhs_number, person_key: person_id}",
            "{name: events, path: events.parquet, person_key: person_id}",
        ],
    )
    code, out = run(capsys, str(path))
    assert code == 0 and "nhs_number: 6 valid NHS numbers (declared nhs_number)" in out
    assert "events: 6 rows read" in out and "declares only a person key" in out and "nothing found" in out


def test_undeclared_number_columns_need_attention_and_a_number_like_name_is_hidden(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = str(NUMBERS[5])  # a header row that is really data
    notes = [f"kin {n}" for n in NUMBERS[:3]] + ["x"] * 3
    path = spec(
        tmp_path,
        {"people": pa.table({"nhs_number": NUMBERS, "notes": notes, header: ["a"] * 6, "kin": NUMBERS.tolist()})},
        [
            "{name: people, path: people.parquet, nhs_number: nhs_number, "
            "scan_exclude: [{column: kin, reason: reviewed}]}"
        ],
    )
    code, out = run(capsys, str(path))
    assert code == 1 and "notes: 3 valid NHS numbers (UNDECLARED)" in out and "needs attention" in out
    assert "kin: 6 valid NHS numbers (excluded)" in out
    code, out = run(capsys, str(path), "--json")
    document = json.loads(out)
    assert code == 1 and document["needs_attention"] and document["tables"][0]["undeclared"] == ["notes"]
    assert "column 3 (named like data)" in [c["column"] for c in document["tables"][0]["columns"]]


def test_a_key_only_table_with_numbers_and_an_unlinked_table_need_attention(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = spec(
        tmp_path,
        {
            "people": pa.table({"nhs_number": NUMBERS}),
            "contacts": pa.table({"person_id": PEOPLE, "nhs": [str(n) for n in NUMBERS]}),
        },
        [
            "{name: people, path: people.parquet, nhs_number: nhs_number}",
            "{name: contacts, path: contacts.parquet, person_key: person_id}",
        ],
    )
    code, out = run(capsys, str(path))
    assert code == 1
    assert "nhs: 6 valid NHS numbers (UNDECLARED)" in out
    assert "NO LINK to the cohort" in out  # no table declares a number and a key: nothing links contacts


def test_rows_limits_the_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = spec(
        tmp_path, {"p": pa.table({"nhs_number": NUMBERS})}, ["{name: p, path: p.parquet, nhs_number: nhs_number}"]
    )
    code, out = run(capsys, str(path), "--rows", "2")
    assert code == 0 and "p: 2 rows read" in out and "nhs_number: 2 valid" in out


def test_a_missing_column_needs_attention_and_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = spec(tmp_path, {"p": pa.table({"nhs": NUMBERS})}, ["{name: p, path: p.parquet, nhs_number: nhs_number}"])
    code, out = run(capsys, str(path))
    assert code == 1 and "MISSING declared column(s): nhs_number" in out
    assert run(capsys, str(tmp_path / "none.yaml"))[0] == 2
    (tmp_path / "bad.yaml").write_text("name: s\npurpose: research\ntables:\n  - {name: q, path: q.parquet}\n")
    assert run(capsys, str(tmp_path / "bad.yaml"))[0] == 2
    (tmp_path / "gone.yaml").write_text(
        "name: s\npurpose: research\ntables:\n  - {name: q, path: q.parquet, nhs_number: n}\n"
    )
    assert run(capsys, str(tmp_path / "gone.yaml"))[0] == 2
    (tmp_path / "q.parquet").write_bytes(b"not parquet at all")
    assert run(capsys, str(tmp_path / "gone.yaml"))[0] == 2
