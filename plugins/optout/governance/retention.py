"""Retention: delete what is kept longer than its rule, one ledger entry per deletion.

Three rules, Airflow's ``[optout]`` options (durations such as ``30d``), with these defaults:

- ``retain_outputs`` (30d): filtered extract folders under ``<data dir>/extracts/<name>/<run>``, which
  hold the data itself; the recipient's copy is the recipient's to keep;
- ``retain_validation`` (400d): their validation folders (``<run>.validation``: the proof's result and
  Data Docs, counts only), kept past a year so the annual review can open them;
- ``retain_versions`` (30d): the NHS numbers (cohort and cleared) of list versions requested longer ago,
  except the version in use. The version's row (dates and counts) stays, so refreshes stay on record.

A folder is first renamed to a hidden name beside it (atomic), then recorded, then removed; if the
ledger cannot record it, it is renamed back, so nothing goes unrecorded. A folder's age is its last
change (mtime). A version's numbers are recorded as deleted, then deleted: a failure in between leaves
an entry and the numbers, and the next run deletes them (and records it again).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from optout import config, db
from optout.governance.settings import option
from optout.ledger import Event, Ledger
from optout.store import Store
from optout.store_tables import numbers_table, versions_table

KIND = "retention"
VALIDATION_SUFFIX = ".validation"
DEFAULTS = {"retain_outputs": "30d", "retain_validation": "400d", "retain_versions": "30d"}


@dataclass(frozen=True)
class Rules:
    outputs: timedelta
    validation: timedelta
    versions: timedelta

    @classmethod
    def from_settings(cls) -> Rules:
        def read(name: str) -> timedelta:
            return config.parse_duration(option(name) or DEFAULTS[name], field=f"[optout] {name}")

        return cls(read("retain_outputs"), read("retain_validation"), read("retain_versions"))


@dataclass(frozen=True)
class Deletion:
    what: str  # output | validation | version numbers
    subject: str  # a path under the data folder, or "list version N"
    age_days: int
    entry_id: int


def run(
    rules: Rules | None = None,
    *,
    url: str | None = None,
    data_dir: Path | None = None,
    now: datetime | None = None,
) -> list[Deletion]:
    """Delete everything past its rule; returns what was deleted, each with its ledger entry."""
    rules = rules or Rules.from_settings()
    now = now or datetime.now(UTC)
    root = data_dir or config.data_dir()
    ledger = Ledger(url)
    try:
        done = [
            _delete_folder(ledger, root, folder, what, now, rule)
            for folder, what, rule in _expired_folders(root / "extracts", rules, now)
        ]
        done += _forget_versions(ledger, url, rules.versions, now)
    finally:
        ledger.dispose()
    return done


def _expired_folders(extracts: Path, rules: Rules, now: datetime) -> Iterator[tuple[Path, str, timedelta]]:
    """Run folders (and their validation folders) older than their rule: ``extracts/<name>/<run>``."""
    if not extracts.is_dir():
        return
    for extract in sorted(p for p in extracts.iterdir() if p.is_dir()):
        for folder in sorted(p for p in extract.iterdir() if p.is_dir() and not p.name.startswith(".")):
            validation = folder.name.endswith(VALIDATION_SUFFIX)
            rule = rules.validation if validation else rules.outputs
            if _age(folder, now) > rule:
                yield folder, "validation" if validation else "output", rule


def _delete_folder(ledger: Ledger, root: Path, folder: Path, what: str, now: datetime, rule: timedelta) -> Deletion:
    hidden = folder.with_name(f".{folder.name}.{os.getpid()}.retention")
    age = _age(folder, now)
    os.replace(folder, hidden)
    subject = folder.relative_to(root).as_posix()
    try:
        entry_id = ledger.record_event(
            Event(KIND, subject, {"what": what, "age_days": age.days, "rule": config.format_duration(rule)}), now=now
        )
    except BaseException:
        os.replace(hidden, folder)
        raise
    shutil.rmtree(hidden)
    return Deletion(what, subject, age.days, entry_id)


def _forget_versions(ledger: Ledger, url: str | None, rule: timedelta, now: datetime) -> list[Deletion]:
    """Delete the numbers of versions requested before ``now - rule``, the current one excepted."""
    store = Store(url)
    try:
        current = store.current()
    finally:
        store.dispose()
    v, n = versions_table.c, numbers_table.c
    done = []
    with db.bound(url or config.store_url()) as engine:
        with db.transaction(engine) as conn:
            holding = conn.execute(
                sa.select(v.id, v.requested_at)
                .where(v.id.in_(sa.select(n.version_id).distinct()), v.requested_at < now - rule)
                .order_by(v.id)
            ).all()
        for version_id, requested_at in holding:
            if current is not None and version_id == current.id:
                continue
            age = now - _aware(requested_at)
            subject = f"list version {version_id}"
            detail: dict[str, str | int] = {
                "what": "version numbers",
                "age_days": age.days,
                "rule": config.format_duration(rule),
            }
            entry_id = ledger.record_event(Event(KIND, subject, detail), now=now)  # recorded, then deleted
            with db.transaction(engine, write=True) as conn:
                conn.execute(numbers_table.delete().where(n.version_id == version_id))
            done.append(Deletion("version numbers", subject, age.days, entry_id))
    return done


def _age(path: Path, now: datetime) -> timedelta:
    return now - datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
