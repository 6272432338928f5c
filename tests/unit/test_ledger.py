"""The disclosure ledger: append-only on both backends, tampering caught by the hash chain."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from optout.errors import InputError
from optout.ledger import GENESIS, Disclosure, Ledger

CHECKED = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def disclosure(**changes: object) -> Disclosure:
    values: dict[str, object] = {
        "extract": "cancer-audit",
        "purpose": "research",
        "recipient": "University of Leeds",
        "version_id": 3,
        "version_checked_at": CHECKED,
        "rows_in": 1000,
        "rows_out": 940,
        "removed_rows": {"opted_out": 50, "unchecked": 10},
        "removed_people": 20,
        "validation_ok": True,
        "output_hashes": {"patients.csv": "a" * 64},
        "legal_basis": "s251",
        "legal_reference": "CAG 21/CAG/0001",
        "dag_id": "extract_cancer_audit",
        "task_id": "export",
        "run_id": "manual__2026-11-25T10:00:00+00:00",
        "data_docs": "/srv/docs/index.html",
    }
    values.update(changes)
    return Disclosure(**values)  # type: ignore[arg-type]


def test_append_chains_entries_and_reads_them_back(store_url: str) -> None:
    ledger = Ledger(store_url)
    first = ledger.append(disclosure(), now=CHECKED + timedelta(hours=5))
    second = Ledger(store_url).append(disclosure(extract="second"), now=CHECKED + timedelta(hours=6))
    assert (first.id, second.id) == (1, 2)
    assert first.prev_hash == GENESIS and second.prev_hash == first.entry_hash
    assert first.version_age_seconds == 5 * 3600
    entries = ledger.entries()
    assert [e.disclosure for e in entries] == [disclosure(), disclosure(extract="second")]
    assert ledger.entries(since=CHECKED + timedelta(hours=6), limit=5)[0].id == 2
    assert ledger.entries(limit=1)[0].id == 2
    assert ledger.verify() == (True, None, "2 entries, chain intact")


@pytest.mark.parametrize("statement", ["UPDATE disclosure_ledger SET rows_out = 1", "DELETE FROM disclosure_ledger"])
def test_update_and_delete_are_refused(store_url: str, statement: str) -> None:
    ledger = Ledger(store_url)
    ledger.append(disclosure())
    engine = sa.create_engine(store_url)
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text(statement))
    assert ledger.entries()[0].disclosure.rows_out == 940
    engine.dispose()


def test_verify_finds_an_entry_edited_behind_the_triggers(store_url: str) -> None:
    ledger = Ledger(store_url)
    for n in range(3):
        ledger.append(disclosure(rows_out=900 + n))
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("ALTER TABLE disclosure_ledger DISABLE TRIGGER USER"))
        else:
            conn.execute(sa.text("DROP TRIGGER disclosure_ledger_no_update"))
        conn.execute(sa.text("UPDATE disclosure_ledger SET recipient = 'Someone Else' WHERE id = 2"))
    engine.dispose()
    ok, bad, message = Ledger(store_url).verify()
    assert (ok, bad) == (False, 2)
    assert "changed" in message


def test_verify_finds_a_deleted_entry(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    ledger = Ledger(url)
    for _ in range(3):
        ledger.append(disclosure())
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER disclosure_ledger_no_delete"))
        conn.execute(sa.text("DELETE FROM disclosure_ledger WHERE id = 2"))
    engine.dispose()
    assert Ledger(url).verify()[:2] == (False, 3)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"recipient": "patient 943 476 5919"}, "recipient"),
        ({"run_id": "manual_9434765919"}, "run_id"),
        ({"output_hashes": {"a.csv": "not-a-hash"}}, "output_hashes[a.csv]"),
        ({"removed_rows": {"opted_out": -1}}, "removed_rows[opted_out]"),
    ],
)
def test_append_refuses_what_could_name_a_person(tmp_path, changes: dict, field: str) -> None:  # type: ignore[no-untyped-def]
    ledger = Ledger(f"sqlite:///{tmp_path / 'store.sqlite'}")
    with pytest.raises(InputError) as caught:
        ledger.append(disclosure(**changes))
    assert caught.value.field == field
    assert "9434765919" not in str(caught.value) and "943 476 5919" not in str(caught.value)
    assert ledger.entries() == []


def test_a_timestamp_is_not_mistaken_for_a_number(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ledger = Ledger(f"sqlite:///{tmp_path / 'store.sqlite'}")
    ledger.append(disclosure(run_id="scheduled__20261125100000", data_docs="/srv/1764064800/index.html"))
    assert ledger.verify()[0]


def test_export_csv(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ledger = Ledger(f"sqlite:///{tmp_path / 'store.sqlite'}")
    ledger.append(disclosure(), now=CHECKED)
    ledger.append(disclosure(extract="later"), now=CHECKED + timedelta(days=2))
    out = io.StringIO()
    assert ledger.export_csv(CHECKED + timedelta(days=1), out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("id,recorded_at,") and len(lines) == 2 and ",later," in lines[1]


def test_cli_verify_and_export(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from optout.cli import main

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    monkeypatch.setenv("OPTOUT_STORE_URL", url)
    Ledger(url).append(disclosure(), now=CHECKED)
    assert main(["ledger", "verify"]) == 0
    assert main(["ledger", "export", "--since", "2026-11-24", "--format", "csv"]) == 0
    assert "cancer-audit" in capsys.readouterr().out
    assert main(["ledger", "export", "--since", "yesterday"]) == 2
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER disclosure_ledger_no_update"))
        conn.execute(sa.text("UPDATE disclosure_ledger SET rows_out = 1"))
    engine.dispose()
    assert main(["ledger", "verify"]) == 1
    assert "tampered at entry 1" in capsys.readouterr().err


def test_an_unfiltered_disclosure_records_no_list_version(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Direct care and exemptions use no list: the entry says so instead of inventing a version."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}")
    entry = ledger.append(disclosure(purpose="exempt", version_id=None, version_checked_at=None))
    assert entry.disclosure.version_id is None and entry.version_age_seconds is None
    assert ledger.entries()[0].disclosure.version_checked_at is None
    assert ledger.verify()[0]


def test_a_ledger_made_before_people_were_counted_still_verifies(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    Ledger(url).append(disclosure())
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # as the ledger was before the column existed
        conn.execute(sa.text("ALTER TABLE disclosure_ledger DROP COLUMN people_out"))
    engine.dispose()
    ledger = Ledger(url)  # adds the column back; the old entry's hash is computed without it
    ledger.append(disclosure(people_out=1234))
    assert [e.disclosure.people_out for e in ledger.entries()] == [None, 1234]
    assert ledger.verify() == (True, None, "2 entries, chain intact")
    with pytest.raises(InputError, match="count of people"):
        ledger.append(disclosure(people_out=-1))
