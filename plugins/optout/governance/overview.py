"""What the governance page shows, read in one go from the store, the ledger, the flows register and the
approvals (no HTML here). Airflow's own state (the nightly refresh's DAG, the DAGs' declared flows) is passed in
by the skin, so this module stays free of Airflow."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from optout import config
from optout.governance.approvals import Approval, read_approvals
from optout.governance.flows import DeclaredFlow, Flow, build_register
from optout.ledger import Ledger, LedgerEntry
from optout.store import Store, VersionInfo

PER_PAGE = 25


@dataclass(frozen=True)
class DisclosureFilter:
    """The page's disclosure filter: period (days, inclusive), purpose, recipient and page number."""

    since: date | None = None
    until: date | None = None
    purpose: str | None = None
    recipient: str | None = None
    page: int = 1
    per_page: int = PER_PAGE

    def keeps(self, entry: LedgerEntry) -> bool:
        day = entry.recorded_at.date()
        d = entry.disclosure
        return (
            (self.since is None or day >= self.since)
            and (self.until is None or day <= self.until)
            and (not self.purpose or d.purpose == self.purpose)
            and (not self.recipient or d.recipient == self.recipient)
        )


@dataclass(frozen=True)
class NightlyState:
    """The nightly refresh DAG as Airflow sees it."""

    found: bool
    paused: bool | None = None
    next_run: datetime | None = None
    last_state: str | None = None
    last_run: datetime | None = None
    last_failure: datetime | None = None


@dataclass(frozen=True)
class Uncovered:
    """A DAG (or task) the opt-out checks do not look at, and why: shown so nobody assumes they do."""

    dag_id: str
    reason: str
    task_id: str | None = None


@dataclass(frozen=True)
class Totals:
    disclosures: int
    rows_sent: int
    rows_removed: int
    people_removed: int


@dataclass(frozen=True)
class Overview:
    now: datetime
    max_age: timedelta
    current: VersionInfo | None
    versions: list[VersionInfo]  # newest first, any status
    disclosures: list[LedgerEntry]  # the page asked for, newest first
    ledger_ok: bool
    ledger_message: str
    flows: list[Flow] = field(default_factory=list)
    filter: DisclosureFilter = DisclosureFilter()
    matching: Totals = Totals(0, 0, 0, 0)  # every disclosure the filter keeps, all pages
    purposes: list[str] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    nightly: NightlyState | None = None  # None: Airflow's state was not read
    uncovered: list[Uncovered] | None = None  # None: Airflow's DAGs were not read
    approvals: list[Approval] = field(default_factory=list)

    @property
    def fresh(self) -> bool:
        return self.current is not None and self.current.is_fresh(self.max_age, self.now)

    @property
    def pages(self) -> int:
        return max(1, -(-self.matching.disclosures // self.filter.per_page))

    @property
    def waiting(self) -> list[VersionInfo]:
        """Quarantined replies: held back until a governance officer approves or rejects them."""
        return [v for v in self.versions if v.status == "quarantined"]

    @property
    def shares(self) -> list[tuple[int, float]]:
        """Opted-out share of each published version, oldest first."""
        return [
            (v.id, v.opted_out_share)
            for v in reversed(self.versions)
            if v.status == "published" and v.opted_out_share is not None
        ]


def overview(
    store_url: str | None = None,
    *,
    now: datetime | None = None,
    versions: int = 10,
    filter: DisclosureFilter | None = None,
    declared: Iterable[DeclaredFlow] = (),
    nightly: NightlyState | None = None,
    uncovered: list[Uncovered] | None = None,
) -> Overview:
    """Everything the page shows, read in one go."""
    chosen = filter or DisclosureFilter()
    store = Store(store_url)
    ledger = Ledger(store_url)
    try:
        ok, _bad, message = ledger.verify()
        entries = ledger.entries()
        current, recent = store.current(), store.versions(limit=versions)
    finally:
        store.dispose()
        ledger.dispose()
    kept = [e for e in reversed(entries) if chosen.keeps(e)]
    start = (max(chosen.page, 1) - 1) * chosen.per_page
    return Overview(
        now=now or datetime.now(UTC),
        max_age=config.max_age(),
        current=current,
        versions=recent,
        disclosures=kept[start : start + chosen.per_page],
        ledger_ok=ok,
        ledger_message=message,
        flows=build_register(declared, store_url, entries=entries),
        filter=chosen,
        matching=Totals(
            len(kept),
            sum(e.disclosure.rows_out for e in kept),
            sum(sum(e.disclosure.removed_rows.values()) for e in kept),
            sum(e.disclosure.removed_people for e in kept),
        ),
        purposes=sorted({e.disclosure.purpose for e in entries}),
        recipients=sorted({e.disclosure.recipient for e in entries}),
        nightly=nightly,
        uncovered=uncovered,
        approvals=read_approvals(store_url),
    )
