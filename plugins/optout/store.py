"""The versioned store of check results: what was sent, what came back, and which version is current.

A *version* is one check: recorded ``pending`` with its cohort when the request is sent, then
``published`` (or ``quarantined`` when the reply looks wrong) when the reply is imported. Every change
of status is one transaction that also writes the numbers, so a reader sees either the old current
version or the whole new one. The store is the only place that keeps NHS numbers: as sorted, delta
encoded, compressed blocks (see :mod:`optout.store_tables`).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np
import sqlalchemy as sa

from optout import config, db, freshness, ndop
from optout.errors import ConcurrentUpdateError, InputError, NoVersionError, StaleListError, SuspiciousReplyError
from optout.lookup import NumberSet
from optout.quarantine import Share, Thresholds, hold_reason
from optout.store_tables import PackedNumbers, metadata, numbers_table, packed_numbers, versions_table, write_numbers

PENDING, PUBLISHED, QUARANTINED, REJECTED = "pending", "published", "quarantined", "rejected"
FAILED = "failed"  # the service rejected the request, MESH reported it undelivered, or a newer one superseded it
COHORT, CLEARED = "cohort", "cleared"
PENDING_GRACE = timedelta(days=1)  # a reply can still arrive for a younger pending request


@dataclass(frozen=True)
class VersionInfo:
    """One version's row: what was sent and when, what came back, and its status."""

    id: int
    local_id: str
    status: str  # pending | published | quarantined | rejected | failed
    request_sha256: str
    requested_at: datetime
    checked_at: datetime | None
    published_at: datetime | None
    cohort_count: int
    cleared_count: int | None
    note: str | None
    source: str = ""

    @property
    def opted_out_count(self) -> int | None:
        return None if self.cleared_count is None else self.cohort_count - self.cleared_count

    @property
    def opted_out_share(self) -> float | None:
        opted_out = self.opted_out_count
        return None if opted_out is None else opted_out / self.cohort_count

    def age(self, now: datetime | None = None) -> timedelta:
        """Time since the check was requested (:func:`optout.freshness.age`)."""
        return freshness.age(self, now)

    def is_fresh(self, max_age: timedelta | None = None, now: datetime | None = None) -> bool:
        """Replied to, and requested less than ``max_age`` ago (default: the limit in force)."""
        return freshness.is_fresh(self, max_age or config.max_age(), now)


class CheckResult:
    """One version's numbers, sorted unique int64 (``cleared`` is empty until a reply is imported).

    They are held packed, as the store keeps them (:class:`optout.store_tables.PackedNumbers`): the lookups
    the file filter uses are built from them a block at a time, so filtering never holds the lists whole
    (50 M rows of 25 M people: 390 MB of int64). ``cohort`` and ``cleared`` are decoded on first use.
    """

    def __init__(self, info: VersionInfo, cohort: np.ndarray | PackedNumbers, cleared: np.ndarray | PackedNumbers):
        self.info = info
        self.packed_cohort = cohort if isinstance(cohort, PackedNumbers) else PackedNumbers.pack(cohort)
        self.packed_cleared = cleared if isinstance(cleared, PackedNumbers) else PackedNumbers.pack(cleared)

    @cached_property
    def cohort(self) -> np.ndarray:
        return self.packed_cohort.numbers()

    @cached_property
    def cleared(self) -> np.ndarray:
        return self.packed_cleared.numbers()

    @cached_property
    def cleared_set(self) -> NumberSet:
        return NumberSet.of_parts(self.packed_cleared.parts())

    @cached_property
    def cohort_set(self) -> NumberSet:
        return NumberSet.of_parts(self.packed_cohort.parts())


class Store:
    """Check results in a SQL database (``OPTOUT_STORE_URL``, else a SQLite file in the data folder)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or config.store_url()
        self._engine: sa.Engine | None = None

    def record_request(
        self, cohort: np.ndarray, *, local_id: str | None = None, source: str = "", request_sha256: str | None = None
    ) -> VersionInfo:
        """Record a request about to be sent as a pending version; its LocalId ties the reply to it.

        ``request_sha256`` is the hash of the request file when the caller has built it already.
        """
        # Building the request refuses invalid numbers, as the service would.
        request_sha256 = request_sha256 or ndop.request_sha256(cohort)
        numbers = ndop.sorted_unique(np.asarray(cohort, dtype=np.int64))
        now = _now()
        local_id = local_id or f"optout-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
        with self._write() as conn:
            taken = conn.execute(sa.select(versions_table.c.id).where(versions_table.c.local_id == local_id)).first()
            if taken is not None:
                raise InputError(f"LocalId {local_id!r} is already recorded; use a new one", field="local_id")
            version_id = conn.execute(
                versions_table.insert()
                .values(
                    local_id=local_id,
                    status=PENDING,
                    request_sha256=request_sha256,
                    source=source,
                    requested_at=now,
                    cohort_count=len(numbers),
                )
                .returning(versions_table.c.id)
            ).scalar_one()
            write_numbers(conn, version_id, COHORT, numbers)
        return self._info(version_id)

    def find_request(self, *, local_id: str | None = None, request_sha256: str | None = None) -> VersionInfo | None:
        """The newest version with this LocalId and/or request hash, whatever its status."""
        if local_id is None and request_sha256 is None:
            raise InputError("find a request by its LocalId or its request file's sha256")
        query = sa.select(versions_table).order_by(versions_table.c.id.desc()).limit(1)
        if local_id is not None:
            query = query.where(versions_table.c.local_id == local_id)
        if request_sha256 is not None:
            query = query.where(versions_table.c.request_sha256 == request_sha256.lower())
        with self._read() as conn:
            row = conn.execute(query).first()
        return _to_info(row) if row else None

    def import_reply(
        self,
        version_id: int,
        cleared: np.ndarray,
        *,
        checked_at: datetime | None = None,
        thresholds: Thresholds | None = None,
    ) -> VersionInfo:
        """Store a reply's cleared numbers and publish the version, in one transaction.

        When :func:`optout.quarantine.hold_reason` finds the opted-out share implausible, or moved from
        the current version's by more than chance explains for the cohorts' sizes (``thresholds``,
        default from the settings), the version is stored as quarantined with that reason as its
        ``note`` and :class:`SuspiciousReplyError` is raised: a wrong reply must not silently change
        who may be used.
        """
        now = _now()
        checked_at = _aware(checked_at, "checked_at") if checked_at is not None else now
        if checked_at > now + timedelta(minutes=5):
            raise InputError("checked_at is in the future; give the time the service ran the check", field="checked_at")
        pending = self.load(version_id)
        if pending.info.status != PENDING:
            raise InputError(
                f"version {version_id} is {pending.info.status}; a reply can only be imported into a pending request"
            )
        cleared = ndop.sorted_unique(np.asarray(cleared, dtype=np.int64))
        at = np.minimum(np.searchsorted(pending.cohort, cleared), len(pending.cohort) - 1)
        strangers = int((pending.cohort[at] != cleared).sum())
        if strangers:
            raise InputError(
                f"{strangers} cleared number(s) are not in version {version_id}'s cohort; "
                "is this the reply to another request?"
            )
        new = Share(len(pending.cohort) - len(cleared), len(pending.cohort))
        thresholds = thresholds or Thresholds.from_env()
        with self._write() as conn:
            previous = _current(conn)
            before = None
            if previous is not None and previous.opted_out_count is not None:
                before = Share(previous.opted_out_count, previous.cohort_count)
            note = hold_reason(new, before, thresholds, previous_version=previous.id if previous else None)
            status = QUARANTINED if note else PUBLISHED
            claimed = conn.execute(
                versions_table.update()
                .where(versions_table.c.id == version_id, versions_table.c.status == PENDING)
                .values(
                    status=status,
                    checked_at=checked_at,
                    published_at=now if status == PUBLISHED else None,
                    cleared_count=len(cleared),
                    note=note,
                )
            ).rowcount
            if claimed != 1:
                raise ConcurrentUpdateError(
                    f"another process imported a reply into version {version_id} first; run `optout status`"
                )
            write_numbers(conn, version_id, CLEARED, cleared)
        info = self._info(version_id)
        if status == QUARANTINED:
            raise SuspiciousReplyError(
                f"version {version_id} is quarantined, not published: {note}. A governance officer should "
                f"inspect it, then run `optout check approve {version_id}` to publish it or "
                f"`optout check reject {version_id}` to discard it"
            )
        return info

    def find_requests(self, local_ids: list[str]) -> dict[str, VersionInfo]:
        """The versions recorded under these LocalIds (those never recorded are missing from the result)."""
        if not local_ids:
            return {}
        with self._read() as conn:
            rows = conn.execute(sa.select(versions_table).where(versions_table.c.local_id.in_(set(local_ids)))).all()
        return {row.local_id: _to_info(row) for row in rows}

    def newest_request(self) -> VersionInfo | None:
        """The request recorded last, whatever its status: only its reply may still become current."""
        with self._read() as conn:
            row = conn.execute(sa.select(versions_table).order_by(versions_table.c.id.desc()).limit(1)).first()
        return _to_info(row) if row else None

    def fail_request(self, version_id: int, reason: str) -> VersionInfo:
        """Mark a pending request failed, keeping ``reason`` (counts and words only) as its note.

        For a request the service rejected, that MESH reported undelivered or expired, or whose reply
        came after a newer request was recorded. It is never used; ``prune`` removes it later.
        """
        return self._move(version_id, PENDING, "only a pending request can fail", status=FAILED, note=reason)

    def approve(self, version_id: int) -> VersionInfo:
        """Publish a quarantined version after a governance officer inspected it."""
        return self._decide(version_id, PUBLISHED)

    def reject(self, version_id: int) -> VersionInfo:
        """Mark a quarantined version rejected: it is never used and is pruned later."""
        return self._decide(version_id, REJECTED)

    def current(self) -> VersionInfo | None:
        """The newest published version by checked-at time (a tie goes to the later import)."""
        with self._read() as conn:
            return _current(conn)

    def require_current(self, *, max_age: timedelta | None = None, now: datetime | None = None) -> VersionInfo:
        """The current version if it is fresh; otherwise refuse, saying what to do.

        ``max_age`` may only shorten the limit in force (:func:`optout.freshness.max_age`).
        """
        info = self.current()
        if info is None:
            raise NoVersionError("no opt-out list yet; run the refresh")
        limit = freshness.max_age(self.url, tighter=(max_age,))
        if not info.is_fresh(limit, now):
            since = (now or _now()) - info.age(now) + limit
            raise StaleListError(
                f"the opt-out list is stale since {since:%Y-%m-%d %H:%M} UTC: version {info.id} was requested "
                f"{config.format_duration(info.age(now))} ago and the maximum age is "
                f"{config.format_duration(limit)} (set by `optout settings set max-age`; OPTOUT_MAX_AGE may only "
                "shorten it); run the refresh"
            )
        return info

    def load(self, version_id: int | None = None) -> CheckResult:
        """One version's numbers (``None``: the current one; freshness is not checked here)."""
        with self._read() as conn:
            if version_id is None:
                info = _current(conn)
                if info is None:
                    raise NoVersionError("no opt-out list yet; run the refresh")
            else:
                row = conn.execute(sa.select(versions_table).where(versions_table.c.id == version_id)).first()
                if row is None:
                    raise InputError(f"there is no version {version_id}; `optout status` lists them")
                info = _to_info(row)
            rows = conn.execute(
                sa.select(numbers_table.c.kind, numbers_table.c.count, numbers_table.c.data)
                .where(numbers_table.c.version_id == info.id)
                .order_by(numbers_table.c.kind, numbers_table.c.seq)
            ).all()
        if not rows and info.cohort_count:
            raise InputError(
                f"version {info.id}'s numbers were deleted under the retention rule ([optout] retain_versions, "
                "see the ledger); filter again with the current version"
            )
        cohort = packed_numbers([r for r in rows if r.kind == COHORT], info.cohort_count)
        cleared = packed_numbers([r for r in rows if r.kind == CLEARED], info.cleared_count or 0)
        return CheckResult(info=info, cohort=cohort, cleared=cleared)

    def versions(self, limit: int = 20) -> list[VersionInfo]:
        """The newest versions first, whatever their status."""
        with self._read() as conn:
            rows = conn.execute(sa.select(versions_table).order_by(versions_table.c.id.desc()).limit(limit)).all()
        return [_to_info(row) for row in rows]

    def prune(self, keep: int = config.DEFAULT_KEEP_VERSIONS, *, now: datetime | None = None) -> int:
        """Delete versions no longer needed; return how many.

        Kept: the newest ``keep`` published (the current one among them), every quarantined version
        (awaiting a decision), rejected versions checked since the oldest kept one, and pending or failed
        requests younger than a day (a pending one's reply may still come).
        """
        if keep < 1:
            raise InputError("keep at least one version (the current one)", field="keep")
        cutoff = (now or _now()) - PENDING_GRACE
        v = versions_table.c
        with self._write() as conn:
            published = conn.execute(
                sa.select(v.id, v.checked_at).where(v.status == PUBLISHED).order_by(v.checked_at.desc(), v.id.desc())
            ).all()
            doomed = [row.id for row in published[keep:]]
            if len(published) >= keep:
                oldest_kept = published[keep - 1].checked_at
                rejected = sa.select(v.id).where(v.status == REJECTED, v.checked_at < oldest_kept)
                doomed += conn.execute(rejected).scalars().all()
            stale = sa.select(v.id).where(v.status.in_([PENDING, FAILED]), v.requested_at < cutoff)
            doomed += conn.execute(stale).scalars().all()
            if doomed:
                conn.execute(numbers_table.delete().where(numbers_table.c.version_id.in_(doomed)))
                conn.execute(versions_table.delete().where(v.id.in_(doomed)))
        return len(doomed)

    def dispose(self) -> None:
        """Close pooled connections (tests and short-lived processes)."""
        if self._engine is not None:
            self._engine.dispose()

    def _decide(self, version_id: int, status: str) -> VersionInfo:
        published_at = _now() if status == PUBLISHED else None
        rule = "only a quarantined version can be approved or rejected"
        return self._move(version_id, QUARANTINED, rule, status=status, published_at=published_at)

    def _move(self, version_id: int, from_status: str, rule: str, **values: Any) -> VersionInfo:
        """Change a version's row if it is ``from_status``; otherwise refuse, saying ``rule``."""
        with self._write() as conn:
            moved = conn.execute(
                versions_table.update()
                .where(versions_table.c.id == version_id, versions_table.c.status == from_status)
                .values(**values)
            ).rowcount
            if moved != 1:
                row = conn.execute(sa.select(versions_table.c.status).where(versions_table.c.id == version_id)).first()
                what = f"is {row.status}" if row else "does not exist"
                raise InputError(f"version {version_id} {what}; {rule}")
        return self._info(version_id)

    def _info(self, version_id: int) -> VersionInfo:
        with self._read() as conn:
            row = conn.execute(sa.select(versions_table).where(versions_table.c.id == version_id)).one()
        return _to_info(row)

    def _ready(self) -> sa.Engine:
        """The engine, with the tables created on first use (serialised, so two processes may race)."""
        if self._engine is None:
            engine = db.engine(self.url)
            with db.transaction(engine, write=True) as conn:
                db.serialise(conn, versions_table.name)
                metadata.create_all(conn)
            self._engine = engine
        return self._engine

    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        """One snapshot: a version row and its numbers are read consistently."""
        with db.transaction(self._ready(), snapshot=True) as conn:
            yield conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with db.transaction(self._ready(), write=True) as conn:
            yield conn


def _current(conn: sa.Connection) -> VersionInfo | None:
    v = versions_table.c
    row = conn.execute(
        sa.select(versions_table).where(v.status == PUBLISHED).order_by(v.checked_at.desc(), v.id.desc()).limit(1)
    ).first()
    return _to_info(row) if row else None


def _to_info(row: sa.Row[Any]) -> VersionInfo:
    return VersionInfo(
        id=row.id,
        local_id=row.local_id,
        status=row.status,
        request_sha256=row.request_sha256,
        requested_at=row.requested_at,
        checked_at=row.checked_at,
        published_at=row.published_at,
        cohort_count=int(row.cohort_count),
        cleared_count=None if row.cleared_count is None else int(row.cleared_count),
        note=row.note,
        source=row.source,
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        raise InputError("give a time with its time zone (for example 2025-01-31T09:00:00Z)", field=field)
    return value.astimezone(UTC)
