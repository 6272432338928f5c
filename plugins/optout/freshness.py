"""The one freshness rule: how old a list version is, the longest age allowed, and fresh or stale.

A version's age counts from when its check was *requested* (the cohort sent), never from when the reply
was imported: a reply that arrives days late describes the opt-outs as they were when it was asked for.
A version is fresh while its age is strictly below the limit; exactly at the limit it is stale.

The limit lives with the store: the newest ``setting`` event for ``max_age`` in the ledger, written
only by ``optout settings set max-age 48h`` (who and when, hash-chained), 48 hours until then. The
environment (``OPTOUT_MAX_AGE``) and an operator's ``max_age`` argument may only make it shorter: DAG
code that sets ``os.environ["OPTOUT_MAX_AGE"] = "3650d"`` changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from optout import config

SETTING = "setting"
MAX_AGE = "max_age"


class Checked(Protocol):
    """What the rule needs of a version (``store.VersionInfo``)."""

    @property
    def requested_at(self) -> datetime: ...

    @property
    def checked_at(self) -> datetime | None: ...


def age(version: Checked, now: datetime | None = None) -> timedelta:
    """Time since the version's check was requested (or since its check time, if that is earlier: a
    version imported with an older check time is as old as that, never younger)."""
    start = min(version.requested_at, version.checked_at or version.requested_at)
    return (now or datetime.now(UTC)) - start


def within(elapsed: timedelta, limit: timedelta) -> bool:
    """The boundary, in one place: fresh while strictly younger than the limit."""
    return elapsed < limit


def is_fresh(version: Checked, limit: timedelta, now: datetime | None = None) -> bool:
    """A version with a reply, whose check was requested less than ``limit`` ago."""
    return version.checked_at is not None and within(age(version, now), limit)


def recorded_max_age(url: str | None = None) -> timedelta:
    """The store's limit: the newest ``optout settings set max-age`` in the ledger, else 48 hours."""
    from optout.ledger import Ledger

    ledger = Ledger(url)
    try:
        changes = [e for e in ledger.events(kind=SETTING) if e.event.subject == MAX_AGE]
    finally:
        ledger.dispose()
    if not changes:
        return config.DEFAULT_MAX_AGE
    return timedelta(seconds=int(changes[-1].event.detail["seconds"]))


def max_age(url: str | None = None, *, tighter: Iterable[timedelta | None] = ()) -> timedelta:
    """The limit in force: the store's, shortened (never lengthened) by ``OPTOUT_MAX_AGE`` and ``tighter``."""
    limits = [recorded_max_age(url), *(limit for limit in tighter if limit is not None)]
    text = os.environ.get("OPTOUT_MAX_AGE")
    if text:
        limits.append(config.parse_duration(text))
    return min(limits)


def set_max_age(text: str, *, changed_by: str, url: str | None = None, now: datetime | None = None) -> int:
    """Record a new store limit in the ledger (who, when, old and new value); returns the entry id."""
    from optout.errors import InputError
    from optout.ledger import Event, Ledger

    new = config.parse_duration(text, field="max-age")
    who = " ".join(changed_by.split())
    if len(who) < 2:
        raise InputError("say who changes the setting: --by NAME", field="--by")
    old = recorded_max_age(url)
    detail: dict[str, str | int] = {
        "value": config.format_duration(new),
        "seconds": int(new.total_seconds()),
        "previous": config.format_duration(old),
        "changed_by": who,
    }
    ledger = Ledger(url)
    try:
        return ledger.record_event(Event(SETTING, MAX_AGE, detail), now=now)
    finally:
        ledger.dispose()
