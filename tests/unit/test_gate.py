"""The send-time gate as a library: what it refuses, and what it records once a send happened."""

from __future__ import annotations

import csv
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from optout.errors import NoVersionError, StaleListError, VerificationFailed
from optout.filter import run_filter
from optout.gate import check_before_send, record_disclosure, require_still_current
from optout.governance.approvals import ApprovalRefused, ApprovalRegister
from optout.ledger import Ledger
from optout.purpose import Purpose
from optout.spec import load_spec
from optout.store import Store
from optout.validation import run_validation
from tests.sample_extract import SPECS, seed


@pytest.fixture
def research(tmp_path: Path) -> tuple[Path, Store]:
    """The sample research extract, filtered with a fresh version and validated."""
    store = Store()
    version = seed(store)
    spec = load_spec(SPECS / "research_extract.yaml")
    out_dir = tmp_path / "extract"
    run_filter(spec, out_dir, store.load(version))
    assert run_validation(spec, out_dir, store.load(version), current=store.current()).ok
    return out_dir, store


@pytest.fixture
def exempt(tmp_path: Path) -> Path:
    """The sample court-order extract, copied unfiltered, with its approval recorded."""
    out_dir = tmp_path / "exempt"
    run_filter(load_spec(SPECS / "exempt_disclosure.yaml"), out_dir, None)
    approve("HC-ORDER-2026-A17")
    return out_dir


def approve(reference: str, basis: str = "court_order", expires: date | None = None) -> None:
    register = ApprovalRegister()
    try:
        register.add(
            reference,
            basis=basis,
            approved_by="Caldicott Guardian",
            expires=expires or datetime.now(UTC).date() + timedelta(days=30),
            recorded_by="IG officer",
        )
    finally:
        register.dispose()


def test_a_proved_extract_passes_and_is_recorded(research: tuple[Path, Store]) -> None:
    out_dir, store = research
    permit = check_before_send(out_dir, Purpose.RESEARCH, files=[out_dir / "patients.csv"], store=store)
    assert set(permit.files) == {"patients.csv"} and permit.validation is not None
    entry = record_disclosure(permit, recipient="Research team", dag_id="d", task_id="t", run_id="r")
    assert entry.disclosure.output_hashes == permit.hashes and entry.disclosure.validation_ok
    assert entry.disclosure.removed_rows["opted_out"] > 0
    assert [e.id for e in Ledger().entries()] == [entry.id]
    # The people the proof counted: every kept person has a patients row (keys only in episodes).
    people = {row["person_id"] for row in csv.DictReader((out_dir / "patients.csv").open(encoding="utf-8"))}
    assert entry.disclosure.people_out == permit.validation.people_out == len(people) > 0


def test_the_people_sent_are_the_stores_count_not_the_folders(research: tuple[Path, Store]) -> None:
    import json

    from optout.validation import RESULT_NAME, validation_dir

    out_dir, store = research
    result = validation_dir(out_dir) / RESULT_NAME
    data = json.loads(result.read_text())
    counted, data["people_out"] = data["people_out"], 1
    result.write_text(json.dumps(data))
    entry = record_disclosure(check_before_send(out_dir, Purpose.RESEARCH, store=store), recipient="Research team")
    assert entry.disclosure.people_out == counted != 1


def test_send_time_freshness_and_currency(research: tuple[Path, Store]) -> None:
    out_dir, store = research
    with pytest.raises(StaleListError):
        check_before_send(out_dir, Purpose.RESEARCH, store=store, now=datetime.now(UTC) + timedelta(days=3))
    seed(store, age=timedelta(minutes=1))
    with pytest.raises(VerificationFailed, match="filtered with list version 1, but version 2 is current now"):
        check_before_send(out_dir, Purpose.RESEARCH, store=store)


def test_the_purpose_must_be_the_extracts(research: tuple[Path, Store]) -> None:
    out_dir, store = research
    with pytest.raises(VerificationFailed, match="prepared for purpose 'research', not 'planning'"):
        check_before_send(out_dir, Purpose.PLANNING, store=store)


def test_only_listed_files_of_the_extract_may_go(research: tuple[Path, Store], tmp_path: Path) -> None:
    out_dir, store = research
    outside = tmp_path / "patients.csv"
    shutil.copyfile(out_dir / "patients.csv", outside)
    for item in (outside, out_dir / "manifest.json", out_dir / ".." / "extract" / "nope.csv"):
        with pytest.raises(VerificationFailed, match="is not an output listed in"):
            check_before_send(out_dir, Purpose.RESEARCH, files=[item], store=store)


def test_unfiltered_extract_is_hashed_without_a_list(exempt: Path) -> None:
    permit = check_before_send(exempt, Purpose.EXEMPT)
    assert permit.validation is None and set(permit.files) == {"patients.csv"}
    entry = record_disclosure(permit, recipient="High Court")
    assert (entry.disclosure.legal_basis, entry.disclosure.validation_ok, entry.disclosure.people_out) == (
        "court_order",
        False,
        None,
    )
    with (exempt / "patients.csv").open("a", encoding="utf-8") as handle:
        handle.write("P902,,65+\n")
    with pytest.raises(VerificationFailed, match=r"'patients\.csv' changed after the filter wrote its manifest"):
        check_before_send(exempt, Purpose.EXEMPT)


def test_an_exemption_leaves_only_under_a_valid_approval(exempt: Path) -> None:
    register = ApprovalRegister()
    register.revoke("HC-ORDER-2026-A17", by="IG officer")
    with pytest.raises(ApprovalRefused, match="'HC-ORDER-2026-A17' was revoked by IG officer"):
        check_before_send(exempt, Purpose.EXEMPT)
    approve("HC-ORDER-2026-A17", basis="copi_reg3")  # recorded again, for another basis
    with pytest.raises(ApprovalRefused, match="basis 'copi_reg3', but the spec claims 'court_order'"):
        check_before_send(exempt, Purpose.EXEMPT)
    approve("HC-ORDER-2026-A17", expires=datetime.now(UTC).date())  # valid on its last day, expired the day after
    check_before_send(exempt, Purpose.EXEMPT)
    with pytest.raises(ApprovalRefused, match=r"expired on .*optout approvals add HC-ORDER-2026-A17"):
        check_before_send(exempt, Purpose.EXEMPT, now=datetime.now(UTC) + timedelta(days=1))
    register.dispose()
    assert Ledger().entries() == []  # refusals record no disclosure


def test_an_unrecorded_approval_is_refused(tmp_path: Path) -> None:
    out_dir = tmp_path / "exempt"
    run_filter(load_spec(SPECS / "exempt_disclosure.yaml"), out_dir, None)
    with pytest.raises(ApprovalRefused, match="have not recorded: nothing was sent"):
        check_before_send(out_dir, Purpose.EXEMPT)


def test_the_ledger_keeps_the_limit_the_list_was_checked_against(research: tuple[Path, Store]) -> None:
    out_dir, store = research
    permit = check_before_send(out_dir, Purpose.RESEARCH, store=store, max_age=timedelta(hours=5))
    entry = record_disclosure(permit, recipient="Research team")
    assert entry.disclosure.max_age_seconds == 5 * 3600
    assert entry.version_age_seconds is not None and 3500 < entry.version_age_seconds < 3700
    assert Ledger().verify()[0]


def test_no_manifest_no_send(tmp_path: Path) -> None:
    with pytest.raises(VerificationFailed, match="run the opt-out filter before the export"):
        check_before_send(tmp_path, Purpose.DIRECT_CARE)


def test_no_list_no_secondary_use(exempt: Path) -> None:
    from optout.manifest import read_manifest

    with pytest.raises(NoVersionError):
        require_still_current(read_manifest(exempt), Store())


def test_a_rewritten_output_manifest_and_result_do_not_pass(research: tuple[Path, Store]) -> None:
    """The bypass: a task appends an opted-out person's row, then rewrites the manifest and result.json to
    match. The folder is consistent again, but the store's record of what was validated is not."""
    import dataclasses
    import json

    from optout.manifest import MANIFEST_NAME, Manifest, sha256_of
    from optout.validation import RESULT_NAME, validation_dir
    from tests.sample_extract import opted_out

    out_dir, store = research
    patients = out_dir / "patients.csv"
    header = patients.read_text().splitlines()[0].split(",")
    row = ["P999" if name == "person_id" else str(opted_out()[0]) if name == "nhs_number" else "x" for name in header]
    with patients.open("a") as handle:
        handle.write(",".join(row) + "\n")
    manifest = Manifest.read(out_dir)
    tables = tuple(
        dataclasses.replace(t, rows_out=t.rows_out + 1, rows_in=t.rows_in + 1, sha256=sha256_of(patients))
        if t.file == "patients.csv"
        else t
        for t in manifest.tables
    )
    dataclasses.replace(manifest, tables=tables).write(out_dir)
    result = validation_dir(out_dir) / RESULT_NAME
    data = json.loads(result.read_text())
    data["manifest_sha256"] = sha256_of(out_dir / MANIFEST_NAME)
    result.write_text(json.dumps(data))
    with pytest.raises(VerificationFailed, match="not the one the store recorded as validated"):
        check_before_send(out_dir, Purpose.RESEARCH, store=store)
    with pytest.raises(VerificationFailed, match="not the one the store recorded as validated"):
        check_before_send(out_dir, Purpose.RESEARCH, files=[patients], store=store)
    assert Ledger().entries() == []


def test_an_unrecorded_validation_does_not_pass(research: tuple[Path, Store], tmp_path: Path) -> None:
    """A folder copied with its result.json to a new place was never validated there."""
    out_dir, store = research
    from optout.validation import validation_dir

    copy = tmp_path / "copy"
    shutil.copytree(out_dir, copy)
    shutil.copytree(validation_dir(out_dir), validation_dir(copy))
    with pytest.raises(VerificationFailed, match="the store has no validation of"):
        check_before_send(copy, Purpose.RESEARCH, store=store)
