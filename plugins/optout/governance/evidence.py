"""The evidence pack for the annual review and the DSPT return: what the store and the ledger show over a
period, built as one :class:`~optout.governance.document.Document` (rendered by ``pack_pdf``/``pack_html``).

Counts, names, dates and hashes only: no section reads a number from the store, only version rows and
ledger entries (which refuse anything that looks like an NHS number when they are written).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from optout import config
from optout.governance import charts
from optout.governance.approvals import Approval, read_approvals
from optout.governance.decisions import Decision, decisions
from optout.governance.document import Alert, Document, Section, Table
from optout.governance.flows import OVERDUE, UNREVIEWED, DeclaredFlow, Flow, build_register
from optout.governance.freshness import StalePeriod, stale_periods, timeline
from optout.governance.page import LONDON, NOT_FILTERED, london, proof_label
from optout.ledger import Ledger, LedgerEntry
from optout.store import QUARANTINED, REJECTED, Store, VersionInfo


@dataclass(frozen=True)
class Facts:
    """Everything the pack is drawn from, read once."""

    since: datetime
    until: datetime
    now: datetime
    max_age: timedelta
    versions: list[VersionInfo]  # every version, oldest first
    entries: list[LedgerEntry]  # disclosures in the period, oldest first
    flows: list[Flow]
    ledger_ok: bool
    ledger_message: str
    ledger_total: int
    blocked: list[datetime] = field(default_factory=list)  # export attempts refused (Airflow's task history)
    decided: dict[int, Decision] = field(default_factory=dict)  # who approved or rejected a quarantined reply
    approvals: dict[str, Approval] = field(default_factory=dict)  # by reference, as governance staff recorded

    @property
    def refreshes(self) -> list[VersionInfo]:
        return [v for v in self.versions if self.since <= v.requested_at < self.until]


def read_facts(
    since: datetime,
    until: datetime,
    *,
    url: str | None = None,
    declared: Iterable[DeclaredFlow] = (),
    blocked: Iterable[datetime] = (),
    max_age: timedelta | None = None,
    now: datetime | None = None,
) -> Facts:
    store, ledger = Store(url), Ledger(url)
    try:
        all_entries = ledger.entries()
        ok, _bad, message = ledger.verify()
        versions = list(reversed(store.versions(limit=10**9)))
    finally:
        store.dispose()
        ledger.dispose()
    return Facts(
        since=since,
        until=until,
        now=now or datetime.now(UTC),
        max_age=max_age or config.max_age(),
        versions=versions,
        entries=[e for e in all_entries if since <= e.recorded_at < until],
        flows=build_register(declared, url, entries=all_entries),
        ledger_ok=ok,
        ledger_message=message,
        ledger_total=len(all_entries),
        blocked=sorted(t for t in blocked if since <= t < until),
        decided=decisions(url),
        approvals={approval.reference: approval for approval in read_approvals(url)},
    )


def build(facts: Facts, organisation: str) -> Document:
    """The pack's sections, in the order a reviewer reads them."""
    end = min(facts.until, facts.now)
    samples = timeline(facts.versions, facts.since, end, facts.max_age)
    secondary = [e.recorded_at for e in facts.entries if e.disclosure.purpose not in NOT_FILTERED]
    periods = stale_periods(samples, blocked=facts.blocked, sent=secondary)
    stale_share = sum(not s.fresh for s in samples) / len(samples) if samples else 0.0
    sections = [
        _summary(facts, periods, stale_share),
        _flows(facts),
        _refreshes(facts, samples, periods, stale_share),
        _disclosures(facts),
        _exemptions(facts),
        _quarantine(facts),
        _integrity(facts),
        _method(facts),
    ]
    period = f"{_day(facts.since)} to {_day(facts.until - timedelta(seconds=1))}"
    return Document("Opt-out evidence pack", organisation, period, facts.now, sections)


def _summary(facts: Facts, periods: Sequence[StalePeriod], stale_share: float) -> Section:
    section = Section("Summary")
    people = sum(e.disclosure.removed_people for e in facts.entries)
    overdue = [f.flow for f in facts.flows if f.status(facts.now.date()) in (OVERDUE, UNREVIEWED)]
    rows = [
        ["Refreshes of the opt-out list", _n(len(facts.refreshes))],
        ["Time the list was stale (exports refused)", f"{stale_share:.1%} ({len(periods)} period(s))"],
        ["Export attempts refused while stale", _n(sum(p.blocked for p in periods))],
        ["Disclosures", _n(len(facts.entries))],
        ["People removed before disclosure", _n(people)],
        ["Rows removed before disclosure", _n(sum(_removed(e) for e in facts.entries))],
        ["Exempt disclosures (opt-out not applied)", _n(sum(e.disclosure.purpose == "exempt" for e in facts.entries))],
        ["Flows in the register", _n(len(facts.flows))],
        ["Ledger", "intact" if facts.ledger_ok else "TAMPERED"],
    ]
    section.add(f"{facts.since:%d %B %Y} to {facts.until - timedelta(seconds=1):%d %B %Y}, as recorded by optout.")
    section.add(Table("Key figures", ["", "Count"], rows, numeric=(1,)))
    if not facts.ledger_ok:
        section.add(Alert(f"The ledger does not verify: {facts.ledger_message}. Tell the DPO."))
    if leaked := sum(p.sent for p in periods):
        section.add(Alert(f"{leaked} secondary-use disclosure(s) were recorded while the list was stale."))
    if overdue:
        section.add(Alert(f"{len(overdue)} flow(s) overdue for review or never reviewed: {', '.join(overdue)}."))
    if failed := [
        e for e in facts.entries if not e.disclosure.validation_ok and e.disclosure.purpose not in NOT_FILTERED
    ]:
        section.add(Alert(f"{len(failed)} disclosure(s) were recorded with a failed validation."))
    return section


def _flows(facts: Facts) -> Section:
    today = facts.now.date()
    rows = [
        [
            f.flow,
            f.purpose + (f" ({f.legal_basis})" if f.legal_basis else ""),
            f.recipient,
            f.review.dsa if f.review else "—",
            f.review.dpia if f.review else "—",
            f.review.approved_by if f.review else "—",
            f"{f.review.review_date:%d %b %Y}" if f.review else "—",
            f.status(today),
            _n(f.disclosures),
        ]
        for f in facts.flows
    ]
    header = ["Flow (DAG/task)", "Purpose", "Recipient", "DSA", "DPIA", "Approved by", "Review", "State", "Sent"]
    return Section("Register of flows").add(
        "Every export the DAGs declare, or the ledger saw, with the agreements governance staff recorded "
        "(optout flows set). Sent counts every disclosure on record.",
        Table("Flows", header, rows, empty="No flow is declared or recorded.", numeric=(8,)),
    )


def _refreshes(facts: Facts, samples: list, periods: Sequence[StalePeriod], stale_share: float) -> Section:  # type: ignore[type-arg]
    section = Section("Refreshes and the list's freshness")
    section.add(
        f"The list is fresh while its check is younger than the maximum age ({config.format_duration(facts.max_age)}); "
        f"while it is stale every export for research, planning or service evaluation is refused. "
        f"Stale for {stale_share:.1%} of the period (sampled hourly)."
    )
    if samples:
        section.add(
            charts.freshness(
                samples, periods, facts.max_age, blocked=facts.blocked, caption="Age of the list in use over time"
            )
        )
    section.add(
        Table(
            "Stale periods",
            ["From", "To", "Length", "Exports refused", "Disclosures recorded"],
            [
                [london(p.start), london(p.end), config.format_duration(p.length), _n(p.blocked), _n(p.sent)]
                for p in periods
            ],
            empty="The list was never stale in this period.",
            numeric=(3, 4),
        )
    )
    rows = [
        [
            str(v.id),
            london(v.requested_at),
            london(v.checked_at),
            v.status,
            _n(v.cohort_count),
            _n(v.cleared_count),
            _n(v.opted_out_count),
            "—" if v.opted_out_share is None else f"{v.opted_out_share:.1%}",
        ]
        for v in facts.refreshes
    ]
    header = ["Version", "Requested", "Checked", "Status", "Cohort", "Cleared", "Opted out", "Share"]
    return section.add(Table("Every refresh in the period", header, rows, numeric=(4, 5, 6, 7)))


def _disclosures(facts: Facts) -> Section:
    section = Section("Disclosures")
    months: dict[str, list[LedgerEntry]] = defaultdict(list)
    for entry in facts.entries:
        months[f"{entry.recorded_at.astimezone(LONDON):%Y-%m}"].append(entry)
    by_purpose = {m: Counter(e.disclosure.purpose for e in es) for m, es in sorted(months.items())}
    if by_purpose:
        section.add(charts.monthly(by_purpose, caption="Disclosures per month, by purpose", ylabel="disclosures"))
    section.add(
        Table(
            "By month",
            ["Month", "Disclosures", "Rows sent", "Rows removed", "People removed"],
            [[m, *_totals(es)] for m, es in sorted(months.items())],
            numeric=(1, 2, 3, 4),
        )
    )
    groups: dict[tuple[str, str], list[LedgerEntry]] = defaultdict(list)
    for entry in facts.entries:
        d = entry.disclosure
        groups[(d.purpose + (f" ({d.legal_basis})" if d.legal_basis else ""), d.recipient)].append(entry)
    section.add(
        Table(
            "By purpose and recipient",
            ["Purpose", "Recipient", "Disclosures", "Rows sent", "Rows removed", "People removed"],
            [[p, r, *_totals(es)] for (p, r), es in sorted(groups.items())],
            numeric=(2, 3, 4, 5),
        )
    )
    reasons = sorted({reason for e in facts.entries for reason, n in e.disclosure.removed_rows.items() if n})
    section.add(
        Table(
            "Rows removed by reason, by month",
            ["Month", *(r.replace("_", " ") for r in reasons)],
            [
                [m, *(_n(sum(e.disclosure.removed_rows.get(r, 0) for e in es)) for r in reasons)]
                for m, es in sorted(months.items())
            ],
            empty="No row was removed in this period.",
            numeric=tuple(range(1, len(reasons) + 1)),
        )
    )
    rows = [
        [
            london(e.recorded_at),
            e.disclosure.extract,
            e.disclosure.purpose,
            e.disclosure.recipient,
            _n(e.disclosure.rows_out),
            _n(e.disclosure.people_out),  # "—": not counted (older entries, copies not validated)
            _n(e.disclosure.removed_people),
            proof_label(e.disclosure.purpose, e.disclosure.validation_ok),
        ]
        for e in facts.entries
    ]
    header = ["When", "Extract", "Purpose", "Recipient", "Rows sent", "People sent", "People removed", "Validation"]
    return section.add(Table("Every disclosure", header, rows, numeric=(4, 5, 6)))


def _exemptions(facts: Facts) -> Section:
    groups: dict[tuple[str, str, str], list[LedgerEntry]] = defaultdict(list)
    for e in facts.entries:
        if e.disclosure.legal_basis:
            groups[(e.disclosure.legal_basis, e.disclosure.legal_reference or "—", e.disclosure.recipient)].append(e)
    rows = [
        [basis, ref, recipient, _n(len(es)), _n(sum(e.disclosure.rows_out for e in es)), london(es[-1].recorded_at)]
        for (basis, ref, recipient), es in sorted(groups.items())
    ]
    return Section("Exemptions").add(
        "Disclosures sent without applying the opt-out, each under a recorded legal basis and the reference "
        "of the approval it cites.",
        Table(
            "Exemptions used",
            ["Legal basis", "Approval cited", "Recipient", "Disclosures", "Rows sent", "Last"],
            rows,
            empty="No exemption was used in this period.",
            numeric=(3, 4),
        ),
        "The approvals those exemptions cited, as governance staff recorded them (optout approvals add), "
        "and their state at the end of the period.",
        Table(
            "Approvals cited",
            ["Approval", "Legal basis", "Approved by", "Expires", "State", "Recorded by"],
            _cited(facts, sorted({ref for _basis, ref, _recipient in groups})),
            empty="No approval was cited in this period.",
        ),
    )


def _cited(facts: Facts, references: list[str]) -> list[list[str]]:
    """One row per approval cited; one the store does not hold (sent before approvals were recorded) says so."""
    rows = []
    day = min(facts.until, facts.now).date()
    for ref in references:
        found = facts.approvals.get(ref)
        if found is None:
            rows.append([ref, "—", "—", "—", "not recorded", "—"])
            continue
        recorded = f"{found.recorded_by}, {found.recorded_at:%d %b %Y}"
        expires = f"{found.expires:%d %b %Y}"
        rows.append([ref, found.legal_basis, found.approved_by, expires, found.state(day), recorded])
    return rows


def _quarantine(facts: Facts) -> Section:
    held = [v for v in facts.refreshes if v.note or v.status == QUARANTINED]
    rows = [
        [
            str(v.id),
            london(v.checked_at),
            "—" if v.opted_out_share is None else f"{v.opted_out_share:.1%}",
            {QUARANTINED: "waiting for a decision", REJECTED: "rejected"}.get(v.status, "approved and published"),
            london(v.published_at) if v.status != QUARANTINED else "—",
            facts.decided[v.id].by if v.id in facts.decided else "not recorded",
            v.note or "—",
        ]
        for v in held
    ]
    return Section("Quarantined replies").add(
        "Replies whose opted-out share moved more than allowed are held back until a governance officer "
        "approves (optout check approve --by NAME) or rejects them; the ledger records who decided.",
        Table(
            "Replies held back",
            ["Version", "Checked", "Share", "Decision", "Published", "Decided by", "Why held"],
            rows,
        ),
    )


def _integrity(facts: Facts) -> Section:
    last = facts.entries[-1] if facts.entries else None
    rows = [
        ["Chain", "intact" if facts.ledger_ok else "TAMPERED"],
        ["Check", facts.ledger_message],
        ["Entries in the ledger", _n(facts.ledger_total)],
        ["Entries in this period", _n(len(facts.entries))],
        ["Last entry in this period", f"{last.id} ({london(last.recorded_at)})" if last else "—"],
        ["Its hash (sha256)", last.entry_hash if last else "—"],
    ]
    section = Section("Ledger integrity").add(
        "Every disclosure is one append-only ledger entry holding the hash of the entry before it; the chain "
        "was recomputed from the first entry when this pack was made. Keep the last hash: a later pack must "
        "show the same entry with the same hash.",
        Table("The ledger", ["", ""], rows),
    )
    if not facts.ledger_ok:
        section.add(Alert(f"The ledger does not verify: {facts.ledger_message}."))
    return section


def _method(facts: Facts) -> Section:
    return Section("About this pack").add(
        f"Made {london(facts.now)} by optout from its store of list versions and its disclosure ledger. It "
        "holds counts, names, dates and hashes only: no NHS number and no value from any extract.",
        "Freshness is sampled every hour with the same rule the export gate applies. Export attempts refused "
        "are counted from Airflow's task history when its database could be read.",
        "Counts here are exact, for internal assurance. The public data uses register (optout register) "
        "suppresses small numbers.",
    )


def _totals(entries: Sequence[LedgerEntry]) -> list[str]:
    return [
        _n(len(entries)),
        _n(sum(e.disclosure.rows_out for e in entries)),
        _n(sum(_removed(e) for e in entries)),
        _n(sum(e.disclosure.removed_people for e in entries)),
    ]


def _removed(entry: LedgerEntry) -> int:
    return sum(entry.disclosure.removed_rows.values())


def _n(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _day(moment: datetime) -> str:
    return f"{moment.astimezone(LONDON):%d %b %Y}"
