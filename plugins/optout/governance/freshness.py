"""The list's freshness over time: which version was in use at each moment, how old it was, and when
it was stale (every secondary-use export refused). Uses the store's own freshness rule
(:meth:`VersionInfo.is_fresh`), sampled on a fixed step, so the pack and the gate agree."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from optout.store import PUBLISHED, VersionInfo

STEP = timedelta(hours=1)


@dataclass(frozen=True)
class Sample:
    at: datetime
    version: VersionInfo | None  # the version in use then (None: no list yet)
    fresh: bool

    @property
    def age_hours(self) -> float | None:
        return None if self.version is None else self.version.age(self.at).total_seconds() / 3600


@dataclass(frozen=True)
class StalePeriod:
    start: datetime
    end: datetime
    blocked: int = 0  # export attempts refused in it (from Airflow's task history, when read)
    sent: int = 0  # secondary-use disclosures recorded in it (must be 0)

    @property
    def length(self) -> timedelta:
        return self.end - self.start


def in_use(versions: Sequence[VersionInfo], at: datetime) -> VersionInfo | None:
    """The current version at ``at``: the newest checked among those published by then."""
    live = [v for v in versions if v.status == PUBLISHED and v.published_at is not None and v.published_at <= at]
    return max(live, key=lambda v: (v.checked_at or v.requested_at, v.id), default=None)


def timeline(
    versions: Sequence[VersionInfo], since: datetime, until: datetime, max_age: timedelta, step: timedelta = STEP
) -> list[Sample]:
    """One sample per ``step`` from ``since`` to ``until``."""
    samples, at = [], since
    while at <= until:
        version = in_use(versions, at)
        samples.append(Sample(at, version, version is not None and version.is_fresh(max_age, at)))
        at += step
    return samples


def stale_periods(
    samples: Sequence[Sample], *, blocked: Iterable[datetime] = (), sent: Iterable[datetime] = ()
) -> list[StalePeriod]:
    """Runs of stale samples, each with the refused and the recorded exports that fall inside it."""
    periods: list[StalePeriod] = []
    start = None
    for i, sample in enumerate(samples):
        if not sample.fresh and start is None:
            start = sample.at
        ends = start is not None and (sample.fresh or i == len(samples) - 1)
        if ends:
            assert start is not None
            periods.append(StalePeriod(start, sample.at))
            start = None
    blocked, sent = sorted(blocked), sorted(sent)
    return [
        StalePeriod(
            p.start,
            p.end,
            blocked=sum(p.start <= t < p.end for t in blocked),
            sent=sum(p.start <= t < p.end for t in sent),
        )
        for p in periods
    ]
