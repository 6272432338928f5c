"""The example DAGs' sample extract (include/) and a store version that checked its people."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from optout.nhs_number import Status, normalise
from optout.store import Store

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "include" / "sample"
SPECS = ROOT / "include" / "specs"


def numbers(path: Path) -> np.ndarray:
    """The valid NHS numbers in a CSV's ``nhs_number`` column, sorted unique."""
    with path.open(encoding="utf-8") as handle:
        found = normalise([row["nhs_number"] for row in csv.DictReader(handle)])
    return np.unique(found.numbers[found.status == Status.VALID])


def opted_out() -> np.ndarray:
    return numbers(SAMPLE / "opted_out.csv")


def seed(store: Store, *, age: timedelta = timedelta(hours=1)) -> int:
    """Publish a version for the sample cohort (minus its opt-outs), checked ``age`` ago; its id."""
    cohort = numbers(SAMPLE / "cohort.csv")
    version = store.record_request(cohort)
    store.import_reply(version.id, np.setdiff1d(cohort, opted_out()), checked_at=datetime.now(UTC) - age)
    return version.id


def approve_court_order(url: str | None = None) -> None:
    """Governance staff record the approval the example exempt spec cites (valid for 30 days)."""
    from optout.governance.approvals import ApprovalRegister

    register = ApprovalRegister(url)
    expires = (datetime.now(UTC) + timedelta(days=30)).date()
    register.add("HC-ORDER-2026-A17", basis="court_order", approved_by="CG", expires=expires, recorded_by="IG")
    register.dispose()
