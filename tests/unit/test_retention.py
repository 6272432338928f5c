"""Retention deletes what is past its rule and records each deletion in the ledger, whose chain still verifies."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from optout.errors import InputError
from optout.governance.retention import KIND, Rules, run
from optout.ledger import Disclosure, Ledger
from optout.nhs_number import synthetic
from optout.store import Store

NOW = datetime.now(UTC)
RULES = Rules(outputs=timedelta(days=30), validation=timedelta(days=400), versions=timedelta(days=30))


def folder(path: Path, days_old: int) -> Path:
    path.mkdir(parents=True)
    (path / "patients.csv").write_text("nhs_number\n")
    moment = (NOW - timedelta(days=days_old)).timestamp()
    os.utime(path, (moment, moment))
    return path


def age_versions(url: str, days: int) -> None:
    from optout.store_tables import versions_table

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(versions_table.update().values(requested_at=NOW - timedelta(days=days)))
    engine.dispose()


@pytest.fixture
def url(store_url: str) -> str:
    """Each test on SQLite and on PostgreSQL (the store's two backends)."""
    return store_url


def test_outputs_validation_and_versions_past_their_rules_are_deleted_and_recorded(url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    extracts = data / "extracts" / "research_extract"
    old_output = folder(extracts / "run_old", 45)
    old_validation = folder(extracts / "run_old.validation", 45)  # younger than its 400-day rule
    young = folder(extracts / "run_new", 2)
    ancient_validation = folder(extracts / "run_ancient.validation", 500)
    store = Store(url)
    numbers = synthetic(50)
    for _ in range(3):
        version = store.record_request(numbers)
        store.import_reply(version.id, numbers[2:], checked_at=NOW - timedelta(hours=1))
    store.dispose()
    age_versions(url, 40)
    ledger = Ledger(url)
    ledger.append(
        Disclosure("x", "research", "R", 3, NOW, 1, 1, {}, 0, True, {"a.csv": "a" * 64})
    )  # a disclosure before: the chain must hold across kinds

    done = run(RULES, url=url, data_dir=data, now=NOW)

    assert not old_output.exists() and not ancient_validation.exists()
    assert old_validation.exists() and young.exists()
    assert sorted((d.what, d.subject) for d in done) == [
        ("output", "extracts/research_extract/run_old"),
        ("validation", "extracts/research_extract/run_ancient.validation"),
        ("version numbers", "list version 1"),
        ("version numbers", "list version 2"),
    ]
    events = ledger.events(KIND)
    assert [e.event.subject for e in events] == [d.subject for d in done]
    recorded = {e.event.subject: e.event.detail for e in events}
    assert recorded["extracts/research_extract/run_old"] == {"what": "output", "age_days": 45, "rule": "30d"}
    assert len(ledger.entries()) == 1  # events are not disclosures
    assert ledger.verify()[0]
    store = Store(url)
    assert store.load(3).cleared.size == 48  # the version in use keeps its numbers
    with pytest.raises(InputError, match="deleted under the retention rule"):
        store.load(1)
    assert [v.id for v in store.versions()] == [3, 2, 1]  # the refreshes stay on record
    store.dispose()
    assert run(RULES, url=url, data_dir=data, now=NOW) == []  # nothing left to delete
    ledger.dispose()


def test_a_ledger_that_cannot_record_leaves_the_folder_in_place(url: str, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    old = folder(data / "extracts" / "e" / "run", 45)

    def refuse(*args: object, **kwargs: object) -> int:
        raise RuntimeError("ledger down")

    monkeypatch.setattr(Ledger, "record_event", refuse)
    with pytest.raises(RuntimeError):
        run(RULES, url=url, data_dir=data, now=NOW)
    assert old.exists() and (old / "patients.csv").exists()


def test_rules_come_from_settings_with_documented_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Rules.from_settings() == Rules(timedelta(days=30), timedelta(days=400), timedelta(days=30))
    monkeypatch.setenv("AIRFLOW__OPTOUT__RETAIN_OUTPUTS", "7d")
    assert Rules.from_settings().outputs == timedelta(days=7)
    monkeypatch.setenv("AIRFLOW__OPTOUT__RETAIN_VERSIONS", "soon")
    with pytest.raises(InputError, match="retain_versions"):
        Rules.from_settings()


def test_an_event_holding_an_nhs_number_is_refused(url: str) -> None:
    from optout.ledger import Event

    ledger = Ledger(url)
    with pytest.raises(InputError):
        ledger.record_event(Event(KIND, f"extracts/x/{int(synthetic(1)[0])}", {}))
    ledger.dispose()


def test_a_ledger_made_before_entry_kinds_gains_them_and_still_verifies(url: str) -> None:
    ledger = Ledger(url)
    ledger.append(Disclosure("x", "research", "R", 1, NOW, 1, 1, {}, 0, True, {"a.csv": "a" * 64}))
    ledger.dispose()
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the table as it was before
        conn.execute(sa.text("ALTER TABLE disclosure_ledger DROP COLUMN kind"))
        conn.execute(sa.text("ALTER TABLE disclosure_ledger DROP COLUMN detail"))
    engine.dispose()
    ledger = Ledger(url)
    assert ledger.verify()[0]
    from optout.ledger import Event

    ledger.record_event(Event(KIND, "list version 1", {"what": "version numbers"}))
    assert ledger.verify() == (True, None, "2 entries, chain intact")
    ledger.dispose()
