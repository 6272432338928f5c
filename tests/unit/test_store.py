"""The versioned check store, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from optout import ndop, store, store_tables
from optout.errors import ConcurrentUpdateError, InputError, NoVersionError, StaleListError, SuspiciousReplyError
from optout.freshness import set_max_age
from optout.lookup import NumberSet
from optout.quarantine import Thresholds
from optout.store import Store

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def db(store_url: str) -> Store:
    return Store(store_url)


def valid_numbers(count: int, start: int = 4_000_000_000, step: int = 1) -> np.ndarray:
    candidates = np.arange(start, start + count * 12 * step, step, dtype=np.int64)
    return candidates[ndop.is_valid_number(candidates)][:count]


def publish(db: Store, cohort: np.ndarray, opted_out_share: float, checked_at: datetime, **kw: object) -> int:
    """Record a request and import a reply clearing all but the first ``opted_out_share`` of it."""
    version = db.record_request(cohort)
    db.import_reply(version.id, cohort[round(len(cohort) * opted_out_share) :], checked_at=checked_at, **kw)  # type: ignore[arg-type]
    return version.id


def test_request_then_reply_publishes_a_version(db: Store, tmp_path: Path) -> None:
    cohort = valid_numbers(2000)
    digest = ndop.write_request(tmp_path / "request.dat", cohort[::-1])
    pending = db.record_request(cohort[::-1], local_id="LOCAL-1", source="people.csv")
    assert (pending.status, pending.local_id, pending.source, pending.cohort_count) == (
        "pending",
        "LOCAL-1",
        "people.csv",
        2000,
    )
    assert pending.request_sha256 == digest
    assert pending.requested_at.tzinfo is not None
    assert db.find_request(request_sha256=digest) == pending
    assert db.find_request(local_id="LOCAL-1") == pending
    assert db.find_request(local_id="nope") is None
    assert db.current() is None

    cleared = cohort[100:]
    checked_at = NOW - timedelta(hours=1)
    info = db.import_reply(pending.id, cleared[::-1], checked_at=checked_at)
    assert (info.status, info.cleared_count, info.opted_out_count, info.checked_at) == (
        "published",
        1900,
        100,
        checked_at,
    )
    assert info.published_at is not None and info.published_at.tzinfo is not None
    assert db.current() == info
    assert db.require_current() == info
    assert db.versions() == [info]

    result = db.load()
    assert result.info == info
    assert result.cohort.dtype == np.int64 and result.cohort.tolist() == cohort.tolist()
    assert result.cleared.tolist() == cleared.tolist()
    assert result.cleared_set.contains(cohort).tolist() == [False] * 100 + [True] * 1900
    assert result.cleared_set is result.cleared_set
    assert len(result.cohort_set) == 2000


def test_numbers_survive_chunking_and_any_spacing(db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_tables, "CHUNK", 1000)
    leading_zeros = valid_numbers(5, start=12_345_670, step=3_000_000)
    far = valid_numbers(5, start=9_900_000_000)  # a gap beyond 32 bits
    cohort = np.concatenate([leading_zeros, valid_numbers(2500), far])
    version = db.record_request(cohort)
    db.import_reply(version.id, cohort[1::2], checked_at=NOW, thresholds=Thresholds(max_share=1.0))
    result = db.load(version.id)
    assert len(result.packed_cohort.blocks) == 3  # held as the store keeps them, block by block
    assert result.cohort.tolist() == cohort.tolist()
    assert result.cleared.tolist() == cohort[1::2].tolist()
    # The lookups are built a block at a time, as the whole list would build them.
    assert np.array_equal(result.cleared_set._bits, NumberSet(cohort[1::2])._bits)
    assert len(result.cohort_set) == len(cohort)


def test_current_is_the_newest_check_not_the_newest_import(db: Store) -> None:
    cohort = valid_numbers(100)
    newer = publish(db, cohort, 0.05, NOW - timedelta(hours=1))
    publish(db, cohort, 0.05, NOW - timedelta(hours=5))
    current = db.current()
    assert current is not None and current.id == newer
    tie = publish(db, cohort, 0.05, NOW - timedelta(hours=1))
    current = db.current()
    assert current is not None and current.id == tie


def test_a_suspicious_reply_is_quarantined_until_a_decision(db: Store) -> None:
    cohort = valid_numbers(1000)
    first = publish(db, cohort, 0.05, NOW - timedelta(hours=3))
    second = db.record_request(cohort)
    with pytest.raises(SuspiciousReplyError) as caught:
        db.import_reply(second.id, cohort[200:], checked_at=NOW - timedelta(hours=2))
    message = str(caught.value)
    assert f"optout check approve {second.id}" in message
    assert f"optout check reject {second.id}" in message
    assert "20.00%" in message and "5.00%" in message
    quarantined = db.versions()[0]
    assert quarantined.status == "quarantined" and quarantined.published_at is None
    assert quarantined.note is not None and "20.00%" in quarantined.note
    assert not any(f"{n:010d}" in quarantined.note for n in cohort)
    assert db.require_current().id == first

    approved = db.approve(second.id)
    assert approved.status == "published" and approved.published_at is not None
    assert db.require_current().id == second.id

    third = db.record_request(cohort)
    with pytest.raises(SuspiciousReplyError):
        db.import_reply(third.id, cohort[1:], checked_at=NOW - timedelta(hours=1))
    assert db.reject(third.id).status == "rejected"
    assert db.require_current().id == second.id
    with pytest.raises(InputError, match="is rejected; only a quarantined version"):
        db.approve(third.id)
    with pytest.raises(InputError, match="does not exist"):
        db.reject(999)


def test_a_small_change_publishes_and_the_gate_can_be_widened(db: Store) -> None:
    cohort = valid_numbers(1000)
    publish(db, cohort, 0.05, NOW - timedelta(hours=3))
    publish(db, cohort, 0.09, NOW - timedelta(hours=2))
    assert (
        publish(db, cohort, 0.5, NOW - timedelta(hours=1), thresholds=Thresholds(floor=0.5, max_share=1.0))
        == db.require_current().id
    )


def test_bad_replies_and_requests_are_refused(db: Store) -> None:
    cohort = valid_numbers(100)
    version = db.record_request(cohort, local_id="L1")
    with pytest.raises(InputError, match="already recorded"):
        db.record_request(cohort, local_id="L1")
    with pytest.raises(InputError, match="not valid NHS numbers"):
        db.record_request(np.append(cohort, cohort[0] + 1))
    with pytest.raises(InputError, match="not in version"):
        db.import_reply(version.id, valid_numbers(101)[-2:], checked_at=NOW)
    with pytest.raises(InputError, match="time zone"):
        db.import_reply(version.id, cohort, checked_at=datetime(2025, 1, 1))
    with pytest.raises(InputError, match="future"):
        db.import_reply(version.id, cohort, checked_at=NOW + timedelta(hours=1))
    db.import_reply(version.id, cohort, checked_at=NOW)
    with pytest.raises(InputError, match="is published; a reply can only be imported into a pending request"):
        db.import_reply(version.id, cohort, checked_at=NOW)
    with pytest.raises(InputError, match="there is no version 42"):
        db.load(42)


def test_no_version_and_stale_version_refuse(db: Store) -> None:
    with pytest.raises(NoVersionError, match="no opt-out list yet; run the refresh"):
        db.require_current()
    with pytest.raises(NoVersionError):
        db.load()
    checked_at = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    publish(db, valid_numbers(50), 0.1, checked_at)
    with pytest.raises(StaleListError) as caught:
        db.require_current(now=checked_at + timedelta(hours=50))
    message = str(caught.value)
    assert "stale since 2025-03-03 09:00 UTC" in message
    assert "requested 2d 2h ago" in message and "maximum age is 2d" in message
    assert db.require_current(now=checked_at + timedelta(hours=47)).checked_at == checked_at
    with pytest.raises(StaleListError):  # an argument may shorten the limit, never lengthen it
        db.require_current(max_age=timedelta(days=7), now=checked_at + timedelta(days=6))
    set_max_age("7d", changed_by="Caldicott Guardian", url=db.url)
    assert db.require_current(now=checked_at + timedelta(days=6)).checked_at == checked_at


def test_max_age_comes_from_the_environment(db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    publish(db, valid_numbers(50), 0.1, NOW - timedelta(minutes=10))
    monkeypatch.setenv("OPTOUT_MAX_AGE", "5m")
    with pytest.raises(StaleListError, match="maximum age is 5m"):
        db.require_current()


def test_prune_keeps_current_recent_undecided_and_young_pending(db: Store, store_url: str) -> None:
    cohort = valid_numbers(200)
    published = [publish(db, cohort, 0.05, NOW - timedelta(hours=20 - i)) for i in range(5)]
    old_rejected = db.record_request(cohort)
    with pytest.raises(SuspiciousReplyError):
        db.import_reply(old_rejected.id, cohort[50:], checked_at=NOW - timedelta(hours=30))
    db.reject(old_rejected.id)
    quarantined = db.record_request(cohort)
    with pytest.raises(SuspiciousReplyError):
        db.import_reply(quarantined.id, cohort[50:], checked_at=NOW - timedelta(hours=40))
    old_pending = db.record_request(cohort)
    young_pending = db.record_request(cohort)
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(
            store_tables.versions_table.update()
            .where(store_tables.versions_table.c.id == old_pending.id)
            .values(requested_at=NOW - timedelta(days=2))
        )

    assert db.prune(keep=2) == 5  # three old published, the old rejected one, the old pending one
    left = {v.id for v in db.versions()}
    assert left == {published[3], published[4], quarantined.id, young_pending.id}
    with engine.connect() as conn:
        owners = set(conn.execute(sa.select(store_tables.numbers_table.c.version_id).distinct()).scalars())
    engine.dispose()
    assert owners == left
    assert db.prune(keep=1) == 1
    assert db.require_current().id == published[4]
    with pytest.raises(InputError, match="keep at least one"):
        db.prune(keep=0)


def test_two_imports_of_one_reply_the_loser_fails_cleanly(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cohort = valid_numbers(3000)
    version = Store(store_url).record_request(cohort)
    both_read = threading.Barrier(2, timeout=20)
    real_load = Store.load

    def load_then_wait(self: Store, version_id: int | None = None) -> store.CheckResult:
        result = real_load(self, version_id)
        both_read.wait()  # both have seen the version pending before either writes
        return result

    monkeypatch.setattr(Store, "load", load_then_wait)
    outcomes: list[object] = []

    def run() -> None:
        try:
            outcomes.append(Store(store_url).import_reply(version.id, cohort[10:], checked_at=NOW))
        except Exception as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    monkeypatch.undo()
    assert sorted(type(o).__name__ for o in outcomes) == ["ConcurrentUpdateError", "VersionInfo"]
    loser = next(o for o in outcomes if isinstance(o, ConcurrentUpdateError))
    assert "another process" in str(loser)
    result = Store(store_url).load()
    assert result.cleared.tolist() == cohort[10:].tolist()


def test_readers_always_see_one_complete_version(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_tables, "CHUNK", 500)  # many rows per publish: a wide window for a torn read
    writer = Store(store_url)
    cohorts = [valid_numbers(5000 + 500 * i) for i in range(10)]
    publish(writer, cohorts[0], 0.0, NOW - timedelta(hours=10))
    reading, done = threading.Event(), threading.Event()
    seen: list[tuple[int, int, int, int]] = []
    failures: list[BaseException] = []

    def read() -> None:
        reader = Store(store_url)
        try:
            while not done.is_set():
                result = reader.load()
                info = result.info
                seen.append((info.cohort_count, len(result.cohort), info.cleared_count or 0, len(result.cleared)))
                reading.set()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    assert reading.wait(20)
    for i, cohort in enumerate(cohorts[1:], start=1):
        publish(writer, cohort, 0.0, NOW - timedelta(hours=10 - i))
    done.set()
    thread.join(30)
    assert not failures
    assert seen
    assert all(count == loaded and cleared == got for count, loaded, cleared, got in seen)
    assert len({count for count, *_ in seen}) > 2  # the reader ran while versions were published


def test_tables_are_created_once_when_two_stores_start_together(store_url: str) -> None:
    stores = [Store(store_url) for _ in range(4)]
    start = threading.Barrier(len(stores), timeout=20)
    failures: list[BaseException] = []

    def first_use(s: Store) -> None:
        start.wait()
        try:
            s.current()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=first_use, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures


def test_sqlite_store_is_owner_only_and_in_wal_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Store()  # default: a SQLite file in the data folder
    path = tmp_path / "optout-home" / "store.sqlite"
    assert db.url == f"sqlite:///{path}"
    usual = os.umask(0o022)  # owner-only must not depend on a strict umask
    try:
        db.record_request(valid_numbers(10))
    finally:
        os.umask(usual)
    assert path.stat().st_mode & 0o777 == 0o600
    for companion in path.parent.glob("store.sqlite-*"):
        assert companion.stat().st_mode & 0o777 == 0o600
    engine = sa.create_engine(db.url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()
    db.dispose()


WRITER = """
import sys
from datetime import UTC, datetime
import numpy as np
from optout import ndop
from optout.store import Store

candidates = np.arange(4_000_000_000, 4_000_400_000, dtype=np.int64)
cohort = candidates[ndop.is_valid_number(candidates)]
db = Store(sys.argv[1])
for _ in range(5):
    version = db.record_request(cohort)
    db.import_reply(version.id, cohort, checked_at=datetime.now(UTC))
"""


def test_a_reader_and_a_writer_in_two_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    reader = Store(url)
    candidates = np.arange(4_000_000_000, 4_000_400_000, dtype=np.int64)
    publish(reader, candidates[ndop.is_valid_number(candidates)], 0.0, NOW - timedelta(hours=1))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, url], stderr=subprocess.PIPE)
    loads = 0
    while writer.poll() is None:
        result = reader.load()
        assert len(result.cleared) == result.info.cleared_count
        loads += 1
    assert writer.returncode == 0, writer.stderr.read() if writer.stderr else ""
    assert loads > 0
    assert len(reader.versions()) == 6


def test_an_implausible_first_reply_is_quarantined(db: Store) -> None:
    """An empty or truncated reply has no previous version to compare with, yet must not publish."""
    cohort = valid_numbers(100)
    version = db.record_request(cohort)
    with pytest.raises(SuspiciousReplyError, match=r"above the 25\.00%"):
        db.import_reply(version.id, cohort[:0], checked_at=NOW)
    assert db.current() is None
