"""Validation and the send-time gate for an extract held in database tables (PostgreSQL and SQLite).

The proof is computed in the database (counts and content hashes by SQL aggregates); Great Expectations
gets only the one-row-per-table counts frame, and the gate hashes the tables again before a send.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from optout.errors import VerificationFailed
from optout.filter import run_filter
from optout.gate import check_before_send
from optout.manifest import read_manifest
from optout.purpose import Purpose
from optout.quarantine import ANY_SHARE
from optout.spec import ExtractSpec, load_spec
from optout.store import Store
from optout.validation import CHECKS, read_validation, require_validated, run_validation, validation_dir
from tests.integration.test_sql_engine import _spec, db_url
from tests.unit.filter_data import N

pytestmark = pytest.mark.integration
__all__ = ["db_url"]  # the shared extract fixture, loaded into SQLite or PostgreSQL


def _store(tmp_path: Path) -> Store:
    """A list store with one fresh version: N[0..5] cleared, N[6], N[7] opted out."""
    store = Store(f"sqlite:///{tmp_path / 'list.sqlite'}")
    version = store.record_request(np.sort(N[:8]))
    store.import_reply(
        version.id, np.sort(N[:6]), checked_at=datetime.now(UTC) - timedelta(hours=1), thresholds=ANY_SHARE
    )
    return store


def _filtered(tmp_path: Path, url: str) -> tuple[ExtractSpec, Path, Store]:
    spec = load_spec(_spec(tmp_path, url))
    store = _store(tmp_path)
    run_filter(spec, tmp_path / "out", store.load())
    return spec, tmp_path / "out", store


def _validate(spec: ExtractSpec, out_dir: Path, store: Store) -> dict[str, bool]:
    used = store.load(read_manifest(out_dir).version_id)
    result = run_validation(spec, out_dir, used, current=store.current(), store_url=store.url)
    return {check.name: check.ok for check in result.checks}


def _execute(url: str, statement: str, **params: object) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(statement), params)
    engine.dispose()


def test_a_filtered_database_extract_is_proved_and_may_be_sent(db_url: str, tmp_path: Path) -> None:
    spec, out_dir, store = _filtered(tmp_path, db_url)
    result = run_validation(spec, out_dir, store.load(), current=store.current(), store_url=store.url)
    assert result.ok, result.checks
    assert [check.name for check in result.checks] == list(CHECKS)
    assert result.checks[2].detail["tables"] == 3 and result.checks[2].detail["files_changed"] == 0
    record = require_validated(out_dir, connection=db_url, store_url=store.url)
    assert record == read_validation(out_dir)
    assert record.people_out == 3  # p1, p2, p9: counted from the batches the leak scan streams
    permit = check_before_send(out_dir, Purpose.RESEARCH, store=store, connection=db_url)
    assert permit.tables == ("patients_optout", "events_optout", "notes_out") and permit.files == {}
    assert sorted(permit.hashes) == ["events_optout", "notes_out", "patients_optout"]
    assert check_before_send(out_dir, Purpose.RESEARCH, files=["notes_out"], store=store, connection=db_url).tables
    # Nothing the proof wrote (result, checkpoint, Data Docs) holds a number of the cohort.
    written = b"".join(path.read_bytes() for path in validation_dir(out_dir).rglob("*") if path.is_file())
    assert not [n for n in N if str(n).encode() in written]


def test_the_gate_needs_the_connection_and_only_sends_listed_tables(db_url: str, tmp_path: Path) -> None:
    spec, out_dir, store = _filtered(tmp_path, db_url)
    assert run_validation(spec, out_dir, store.load(), current=store.current(), store_url=store.url).ok
    with pytest.raises(VerificationFailed, match="held in database tables"):
        check_before_send(out_dir, Purpose.RESEARCH, store=store)
    with pytest.raises(VerificationFailed, match="not outputs listed"):
        check_before_send(out_dir, Purpose.RESEARCH, files=["patients"], store=store, connection=db_url)


def test_an_opted_out_row_slipped_into_an_output_fails_the_proof(db_url: str, tmp_path: Path) -> None:
    spec, out_dir, store = _filtered(tmp_path, db_url)
    _execute(db_url, "INSERT INTO patients_optout (pid, nhs_number, note) VALUES ('p3', :n, 'x')", n=str(N[6]))
    checks = _validate(spec, out_dir, store)
    assert checks == {
        "no_uncleared_number": False,
        "no_removed_person": False,
        "manifest_reconciles": False,
        "list_fresh_and_current": True,
    }
    with pytest.raises(VerificationFailed, match="failed validation"):
        check_before_send(out_dir, Purpose.RESEARCH, store=store, connection=db_url)


def test_a_table_changed_or_dropped_after_validation_blocks_the_send(db_url: str, tmp_path: Path) -> None:
    spec, out_dir, store = _filtered(tmp_path, db_url)
    assert all(_validate(spec, out_dir, store).values())
    _execute(db_url, "UPDATE notes_out SET text = 'edited'")
    with pytest.raises(VerificationFailed, match="'notes_out' changed after the filter"):
        check_before_send(out_dir, Purpose.RESEARCH, store=store, connection=db_url)
    _execute(db_url, "DROP TABLE notes_out")
    with pytest.raises(VerificationFailed, match="'notes_out' is missing"):
        check_before_send(out_dir, Purpose.RESEARCH, store=store, connection=db_url)
    assert _validate(spec, out_dir, store)["manifest_reconciles"] is False


def test_a_superseded_list_fails_the_proof(db_url: str, tmp_path: Path) -> None:
    spec, out_dir, store = _filtered(tmp_path, db_url)
    newer = store.record_request(np.sort(N[:8]))
    store.import_reply(newer.id, np.sort(N[:6]), thresholds=ANY_SHARE)
    checks = _validate(spec, out_dir, store)
    assert checks["list_fresh_and_current"] is False
    assert checks["no_uncleared_number"] and checks["no_removed_person"] and checks["manifest_reconciles"]


KEYLESS_SQL = """\
name: keyless extract
purpose: research
tables:
  - name: patients
    table: patients
    connection: {url}
    nhs_number: nhs_number
  - name: events
    query: SELECT nhs, happened FROM events
    connection: {url}
    nhs_number: nhs
"""


def test_people_without_keys_are_counted_by_number_in_the_database(db_url: str, tmp_path: Path) -> None:
    # Kept numbers: N[0] (spaced text; int in events), N[1] (dashed), N[2], N[3] (twice, and in events).
    spec = load_spec(_spec(tmp_path, db_url, KEYLESS_SQL))
    store = _store(tmp_path)
    run_filter(spec, tmp_path / "out", store.load())
    result = run_validation(spec, tmp_path / "out", store.load(), current=store.current(), store_url=store.url)
    assert result.ok, result.checks
    assert require_validated(tmp_path / "out", connection=db_url, store_url=store.url).people_out == 4
