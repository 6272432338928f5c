"""The one freshness rule: age from the request, strict boundary, a limit only a recorded command loosens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from optout import freshness, ndop
from optout.errors import InputError, StaleListError
from optout.ledger import Ledger
from optout.store import Store

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


def test_fresh_strictly_below_the_limit() -> None:
    limit = timedelta(hours=48)
    assert freshness.within(limit - timedelta(microseconds=1), limit)
    assert not freshness.within(limit, limit)  # exactly at the limit: stale, everywhere
    assert not freshness.within(limit + timedelta(seconds=1), limit)


def test_a_late_reply_is_as_old_as_its_request(url: str) -> None:
    store = Store(url)
    cohort = np.sort(ndop.sorted_unique(np.array([9434765919, 9434765870], dtype=np.int64)))
    version = store.record_request(cohort)
    asked = version.requested_at
    store.import_reply(version.id, cohort)  # imported now, checked now: the request is what counts
    info = store.current()
    assert info is not None
    assert not info.is_fresh(timedelta(hours=48), now=asked + timedelta(hours=48))
    assert info.is_fresh(timedelta(hours=48), now=asked + timedelta(hours=47))
    with pytest.raises(StaleListError, match="requested 2d ago"):
        store.require_current(now=asked + timedelta(hours=48))


def test_the_environment_and_arguments_only_tighten(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert freshness.max_age(url) == timedelta(hours=48)
    monkeypatch.setenv("OPTOUT_MAX_AGE", "3650d")  # DAG code trying to switch freshness off
    assert freshness.max_age(url) == timedelta(hours=48)
    assert freshness.max_age(url, tighter=(timedelta(days=30),)) == timedelta(hours=48)
    monkeypatch.setenv("OPTOUT_MAX_AGE", "6h")
    assert freshness.max_age(url, tighter=(timedelta(hours=2), None)) == timedelta(hours=2)
    assert freshness.max_age(url) == timedelta(hours=6)


def test_only_the_recorded_command_changes_the_limit(url: str) -> None:
    entry = freshness.set_max_age("72h", changed_by="Dr A Guardian", url=url, now=NOW)
    assert freshness.max_age(url) == timedelta(hours=72)
    (event,) = [e for e in Ledger(url).events(kind="setting")]
    assert event.id == entry and event.recorded_at == NOW
    assert event.event.detail == {"value": "3d", "seconds": 259200, "previous": "2d", "changed_by": "Dr A Guardian"}
    assert Ledger(url).verify()[0]
    with pytest.raises(InputError, match="--by NAME"):
        freshness.set_max_age("24h", changed_by=" ", url=url)
    with pytest.raises(InputError, match="not a duration"):
        freshness.set_max_age("forever", changed_by="Dr A Guardian", url=url)


def test_settings_cli_records_who(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from optout.cli import main

    monkeypatch.setenv("OPTOUT_STORE_URL", url)
    assert main(["settings", "set", "max-age", "36h", "--by", "Information Governance"]) == 0
    assert main(["settings", "show"]) == 0
    out = capsys.readouterr().out
    assert "max-age set to 1d 12h" in out and "by Information Governance" in out
    assert freshness.max_age(url) == timedelta(hours=36)
