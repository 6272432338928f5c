"""The CLI contract end to end on small synthetic data: exact command forms, exit codes, counts only."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from optout.cli import main
from optout.nhs_number import synthetic

NUMBERS = synthetic(12)
OPTED_OUT = NUMBERS[[2, 5]]
UNCHECKED = NUMBERS[11]  # in the extract, never sent to the check


@pytest.fixture
def extract(tmp_path: Path) -> Path:
    """patients (CSV, messy numbers, a person twice), labs (Parquet, integer numbers), contacts (key only)."""
    folder = tmp_path / "extract"
    folder.mkdir()
    rows = ["patient_id,nhs_no,name"]
    for index, number in enumerate(NUMBERS):
        text = str(number)
        shown = f"{text[:3]} {text[3:6]} {text[6:]}" if index % 3 == 0 else text
        rows.append(f'P{index},{shown},"Name, {index}"')
    rows.append('P1,not known,"second row of P1, no number"')
    rows.append("P99,,nobody")
    (folder / "patients.csv").write_text("\n".join(rows) + "\n")
    pq.write_table(
        pa.table({"nhs": pa.array(NUMBERS[:6], pa.int64()), "value": pa.array(np.arange(6.0))}), folder / "labs.parquet"
    )
    (folder / "contacts.csv").write_text("patient_id,phone\n" + "".join(f"P{i},0{i}\n" for i in range(12)) + "P77,0\n")
    cohort = folder / "cohort.csv"
    cohort.write_text("nhs\n" + "".join(f"{n}\n" for n in NUMBERS[:11]))
    (folder / "spec.yaml").write_text(
        "name: study\npurpose: research\ntables:\n"
        "  - {name: patients, path: patients.csv, nhs_number: nhs_no, person_key: patient_id}\n"
        "  - {name: labs, path: labs.parquet, nhs_number: nhs}\n"
        "  - {name: contacts, path: contacts.csv, person_key: patient_id}\n"
    )
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def reply_to(request: Path, reply: Path, opted_out: np.ndarray = OPTED_OUT, crlf: bool = False) -> None:
    sent = [int(line.rstrip(",")) for line in request.read_text().split()]
    end = "\r\n" if crlf else "\n"
    reply.write_text("".join(f"{n},{end}" for n in sent if n not in set(opted_out.tolist())))


def refresh(capsys: pytest.CaptureFixture[str], extract: Path, checked_at: datetime | None = None) -> str:
    code, out = run(
        capsys, "check", "request", extract / "cohort.csv", "--id-column", "nhs", "--out", extract / "r.dat"
    )
    assert code == 0, out
    reply_to(extract / "r.dat", extract / "reply.dat", crlf=True)
    extra = ["--checked-at", checked_at.isoformat()] if checked_at else []
    code, out = run(capsys, "check", "import", extract / "r.dat", extract / "reply.dat", *extra)
    assert code == 0, out
    return out


def assert_no_numbers(text: str) -> None:
    for number in NUMBERS:
        digits = str(number)
        assert digits not in text.replace(" ", "").replace("-", ""), "an NHS number was printed"


def test_request_import_filter_verify_status(capsys: pytest.CaptureFixture[str], extract: Path) -> None:
    printed = refresh(capsys, extract)
    assert "cohort 11, cleared 9, opted out 2" in printed
    code, out = run(capsys, "filter", "--spec", extract / "spec.yaml", "--out-dir", extract.parent / "out")
    assert code == 0, out
    printed += out
    manifest = json.loads((extract.parent / "out" / "manifest.json").read_text())
    patients = next(t for t in manifest["tables"] if t["name"] == "patients")
    # P2, P5 opted out; P11 unchecked; P1's second row has no number, so all of P1 goes; P99 missing.
    assert patients["rows_in"] == 14
    assert patients["rows_out"] == 14 - 2 - 1 - 2 - 1
    contacts = next(t for t in manifest["tables"] if t["name"] == "contacts")
    assert contacts["rows_out"] == 12 - 4  # P1, P2, P5, P11 and the stranger P77 go
    code, out = run(capsys, "verify", "--spec", extract / "spec.yaml", "--dir", extract.parent / "out")
    assert code == 0, out
    assert "verified" in out
    code, out = run(capsys, "status")
    assert code == 0 and "fresh" in out
    code, out = run(capsys, "status", "--json")
    assert json.loads(out)["fresh"] is True
    assert_no_numbers(printed + out + json.dumps(manifest))


def test_stale_list_refuses_with_exit_1_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], extract: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refresh(capsys, extract, checked_at=datetime.now(UTC) - timedelta(hours=3))
    monkeypatch.setenv("OPTOUT_MAX_AGE", "2h")
    code, out = run(capsys, "filter", "--spec", extract / "spec.yaml", "--out-dir", extract.parent / "out")
    assert code == 1
    assert "stale" in out.lower()
    assert not (extract.parent / "out").exists()
    code, out = run(capsys, "status")
    assert code == 1 and "STALE" in out


def test_no_version_refuses(capsys: pytest.CaptureFixture[str], extract: Path) -> None:
    code, out = run(capsys, "filter", "--spec", extract / "spec.yaml", "--out-dir", extract.parent / "out")
    assert code == 1 and "refresh" in out
    assert run(capsys, "status")[0] == 1


def test_bad_input_exits_2_naming_the_place(capsys: pytest.CaptureFixture[str], extract: Path) -> None:
    code, out = run(capsys, "check", "request", extract / "cohort.csv", "--id-column", "nope", "--out", extract / "x")
    assert code == 2 and "nope" in out and "cohort.csv" in out
    refresh(capsys, extract)
    (extract / "bad.dat").write_text(f"{NUMBERS[0]},\nhello,\n")
    code, out = run(capsys, "check", "import", extract / "r.dat", extract / "bad.dat")
    assert code == 2 and "line 2" in out
    (extract / "spec.yaml").write_text("name: x\npurpose: reserch\ntables: []\n")
    code, out = run(capsys, "filter", "--spec", extract / "spec.yaml", "--out-dir", extract.parent / "out")
    assert code == 2 and "purpose" in out
    assert run(capsys, "no-such-command")[0] == 2
    assert_no_numbers(out)


def test_reply_to_an_unrecorded_request_is_refused(capsys: pytest.CaptureFixture[str], extract: Path) -> None:
    (extract / "own.dat").write_text(f"{NUMBERS[0]},\n")
    (extract / "reply.dat").write_text(f"{NUMBERS[0]},\n")
    code, out = run(capsys, "check", "import", extract / "own.dat", extract / "reply.dat")
    assert code == 2 and "not recorded" in out


def test_quarantine_then_approve(capsys: pytest.CaptureFixture[str], extract: Path) -> None:
    refresh(capsys, extract)
    run(capsys, "check", "request", extract / "cohort.csv", "--id-column", "nhs", "--out", extract / "r2.dat")
    reply_to(
        extract / "r2.dat", extract / "reply2.dat", opted_out=NUMBERS
    )  # an empty reply: held whatever the cohort size
    code, out = run(capsys, "check", "import", extract / "r2.dat", extract / "reply2.dat")
    assert code == 1 and "optout check approve 2" in out
    code, out = run(capsys, "check", "approve", "2")
    assert code == 0 and "version 2 published" in out


def test_direct_care_is_copied_unfiltered_without_a_list(capsys: pytest.CaptureFixture[str], extract: Path) -> None:
    spec = extract / "spec.yaml"
    spec.write_text(spec.read_text().replace("purpose: research", "purpose: direct_care"))
    code, out = run(capsys, "filter", "--spec", spec, "--out-dir", extract.parent / "out")
    assert code == 0, out
    assert (extract.parent / "out" / "patients.csv").exists()
    manifest = json.loads((extract.parent / "out" / "manifest.json").read_text())
    assert manifest["filtered"] is False


def test_console_script_is_installed() -> None:
    assert shutil.which("optout") or Path(__file__).parents[2].joinpath(".venv/bin/optout").exists()
