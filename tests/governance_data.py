"""Store and ledger content for the governance page tests (unit and browser): test-range numbers only."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from optout.errors import SuspiciousReplyError
from optout.ledger import Disclosure, Ledger
from optout.nhs_number import synthetic
from optout.store import Store

NUMBERS = synthetic(200)


def refresh(store: Store, opted_out: int, checked_at: datetime, **kwargs: object) -> None:
    version = store.record_request(NUMBERS)
    store.import_reply(version.id, NUMBERS[opted_out:], checked_at=checked_at, **kwargs)  # type: ignore[arg-type]


def seed(url: str, docs: Path, now: datetime) -> None:
    """Three published refreshes (5%, 6%, 7% opted out, the last 10 h old), one quarantined reply,
    two disclosures (one failed, with a hostile recipient name) linking to a Data Docs page."""
    store = Store(url)
    for i, opted_out in enumerate((10, 12, 14)):
        refresh(store, opted_out, now - timedelta(hours=30 - 10 * i))
    with pytest.raises(SuspiciousReplyError):
        refresh(store, 100, now - timedelta(minutes=5))
    store.dispose()
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "index.html").write_text("<html>the data docs</html>")
    ledger = Ledger(url)
    for recipient, ok in (("University of Leeds", True), ("<script>alert(1)</script>", False)):
        ledger.append(
            Disclosure(
                extract="cancer-audit",
                purpose="research",
                recipient=recipient,
                version_id=3,
                version_checked_at=now - timedelta(hours=10),
                rows_in=1000,
                rows_out=930,
                removed_rows={"opted_out": 60, "unchecked": 10, "missing": 0},
                removed_people=25,
                validation_ok=ok,
                output_hashes={"patients.csv": "b" * 64},
                data_docs=str(docs / "index.html"),
            )
        )
    ledger.dispose()
