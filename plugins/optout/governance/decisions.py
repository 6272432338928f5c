"""Who approved or rejected a quarantined reply: one ledger event per decision (kind ``quarantine``), so
the evidence pack can say who decided, and the record is as tamper-evident as the disclosures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from optout.ledger import Event, Ledger

KIND = "quarantine"


@dataclass(frozen=True)
class Decision:
    version_id: int
    decision: str  # approved | rejected
    by: str
    at: datetime


def record_decision(version_id: int, decision: str, by: str, url: str | None = None) -> int:
    """Record that ``by`` ``decision`` list version ``version_id``; returns the ledger entry id."""
    ledger = Ledger(url)
    try:
        return ledger.record_event(Event(KIND, f"list version {version_id}", {"decision": decision, "by": by}))
    finally:
        ledger.dispose()


def decisions(url: str | None = None) -> dict[int, Decision]:
    """The latest recorded decision about each version."""
    ledger = Ledger(url)
    try:
        events = ledger.events(KIND)
    finally:
        ledger.dispose()
    found = {}
    for entry in events:
        version_id = int(entry.event.subject.rsplit(" ", 1)[-1])
        detail = entry.event.detail
        found[version_id] = Decision(version_id, str(detail.get("decision")), str(detail.get("by")), entry.recorded_at)
    return found
