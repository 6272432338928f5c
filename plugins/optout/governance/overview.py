"""What the governance page shows, read in one go from the store and the ledger (no HTML here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from optout import config
from optout.ledger import Ledger, LedgerEntry
from optout.store import Store, VersionInfo


@dataclass(frozen=True)
class Overview:
    now: datetime
    max_age: timedelta
    current: VersionInfo | None
    versions: list[VersionInfo]  # newest first, any status
    disclosures: list[LedgerEntry]  # newest first
    ledger_ok: bool
    ledger_message: str

    @property
    def fresh(self) -> bool:
        return self.current is not None and self.current.is_fresh(self.max_age, self.now)

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
    store_url: str | None = None, *, now: datetime | None = None, versions: int = 10, disclosures: int = 20
) -> Overview:
    """Everything the page shows, read in one go."""
    store = Store(store_url)
    ledger = Ledger(store_url)
    try:
        ok, _bad, message = ledger.verify()
        return Overview(
            now=now or datetime.now(UTC),
            max_age=config.max_age(),
            current=store.current(),
            versions=store.versions(limit=versions),
            disclosures=list(reversed(ledger.entries(limit=disclosures))),
            ledger_ok=ok,
            ledger_message=message,
        )
    finally:
        store.dispose()
        ledger.dispose()
