"""Verification passes on clean output and fails, with counts only, on any planted or altered row."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from filter_data import N, check_result, write_extract

from optout.filter import run_filter
from optout.spec import ExtractSpec, load_spec
from optout.verify import verify


@pytest.fixture
def filtered(tmp_path: Path) -> tuple[ExtractSpec, Path]:
    spec = load_spec(write_extract(tmp_path / "in"))
    run_filter(spec, tmp_path / "out", check_result())
    return spec, tmp_path / "out"


def _failed(report: object) -> list[str]:
    return [check.name for check in report.checks if not check.ok]  # type: ignore[attr-defined]


def test_clean_output_verifies(filtered: tuple[ExtractSpec, Path]) -> None:
    spec, out = filtered
    report = verify(spec, out, check_result())
    assert report.ok, _failed(report)
    assert not [c for c in report.checks if any(str(n) in c.detail for n in N)]


def test_planted_opted_out_row_fails(filtered: tuple[ExtractSpec, Path]) -> None:
    spec, out = filtered
    path = out / "events.parquet"
    table = pq.read_table(path)
    planted = pa.table({"pid": ["p1"], "nhs": [int(N[6])], "when": table["when"][:1], "score": table["score"][:1]})
    pq.write_table(pa.concat_tables([table, planted.cast(table.schema)]), path)
    failed = _failed(verify(spec, out, check_result()))
    assert failed == ["events: sha256", "events: rows", "events: numbers"]  # p1 itself is cleared


def test_planted_row_of_removed_person_fails(filtered: tuple[ExtractSpec, Path]) -> None:
    spec, out = filtered
    notes = out / "notes.csv"
    notes.write_text(notes.read_text() + '"p8","planted"\n')
    report = verify(spec, out, check_result())
    assert _failed(report) == ["notes: sha256", "notes: rows", "notes: people"]


def test_altered_file_and_wrong_version_fail(filtered: tuple[ExtractSpec, Path]) -> None:
    spec, out = filtered
    (out / "patients.csv").write_text((out / "patients.csv").read_text().replace("fine", "FINE"))
    assert _failed(verify(spec, out, check_result())) == ["patients: sha256"]
    assert "version" in _failed(verify(spec, out, check_result(version=8)))


def test_missing_manifest_fails(tmp_path: Path) -> None:
    spec = load_spec(write_extract(tmp_path / "in"))
    report = verify(spec, tmp_path / "nothing", check_result())
    assert not report.ok and _failed(report) == ["manifest"]
