"""A synthetic year for the governance records: what the evidence pack and the data uses register look like
after months of nightly refreshes and disclosures, on test-range NHS numbers only (no real person).

    python include/demo_history.py [--days 120]      # adds to the demo's store (var/demo/optout)

Nightly refreshes with two outages (the list goes stale), one reply quarantined then approved and one
rejected; research, planning and exempt disclosures to several recipients, the approvals the exempt
ones cite (one valid, one expired, one revoked), and flows with reviews, one of them overdue. Written
through the store and ledger APIs, then the versions' publication times are moved to their check
times, as if each had been imported the night it ran.
"""

from __future__ import annotations

import argparse
import os
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from optout.errors import SuspiciousReplyError
from optout.governance.approvals import ApprovalRegister
from optout.governance.decisions import record_decision
from optout.governance.flows import FlowRegister
from optout.ledger import Disclosure, Ledger
from optout.nhs_number import synthetic
from optout.store import Store, versions_table

OUTAGES = ((40, 4), (95, 3))  # (day, nights without a refresh)
FLOWS = (
    ("research_extract", "export", "research", "University research team", None, None, "cancer-audit"),
    ("planning_extract", "export", "planning", "ICB planning team", None, None, "bed-capacity"),
    ("evaluation_extract", "export", "service_evaluation", "Community services review", None, None, "frailty"),
    ("exempt_disclosure", "export", "exempt", "High Court", "court_order", "HC-ORDER-2026-A17", "court-bundle"),
)


def seed_history(url: str, now: datetime, *, days: int = 120, cohort: int = 2000, seed: int = 7) -> None:
    """``days`` nights of refreshes ending ``now`` and the disclosures that followed them."""
    rng = random.Random(seed)
    numbers = synthetic(cohort)
    start = now - timedelta(days=days)
    _approvals(url, start, now.date())
    store, ledger = Store(url), Ledger(url)
    skipped = {start.date() + timedelta(days=d + i) for d, n in OUTAGES for i in range(n) if d + i < days}
    published: dict[int, datetime | None] = {}  # version -> when it was published
    share = 0.05
    for night in range(days):
        checked = (start + timedelta(days=night)).replace(hour=1, minute=30, second=0, microsecond=0)
        if checked.date() in skipped or checked > now:
            continue
        out = int(cohort * share) + rng.randint(-3, 3)
        if night == 60:
            out = int(cohort * 0.12)  # a suspicious reply: quarantined, then approved by governance
        if night == 80:
            out = int(cohort * 0.4)  # a truncated reply: quarantined, then rejected
        version = store.record_request(numbers)
        try:
            store.import_reply(version.id, numbers[out:], checked_at=checked)
            published[version.id] = checked + timedelta(minutes=5)
        except SuspiciousReplyError:
            if night == 60:
                store.approve(version.id)
                record_decision(version.id, "approved", "Caldicott Guardian", url)
                published[version.id] = checked + timedelta(hours=9)
                share = 0.12
            else:
                store.reject(version.id)
                record_decision(version.id, "rejected", "Information Governance Lead", url)
                published[version.id] = None
        current = store.current()
        for dag_id, task_id, purpose, recipient, basis, reference, extract in FLOWS:
            if rng.random() > (0.12 if purpose != "exempt" else 0.02) or current is None:
                continue
            rows_in = rng.randint(800, 20000)
            people = int(rows_in * share / 3)
            removed = (
                {}
                if purpose == "exempt"
                else {"opted_out": int(rows_in * share), "unchecked": rng.randint(0, 12), "missing": rng.randint(0, 5)}
            )
            ledger.append(
                Disclosure(
                    extract=extract,
                    purpose=purpose,
                    recipient=recipient,
                    version_id=None if purpose == "exempt" else current.id,
                    version_checked_at=None if purpose == "exempt" else current.checked_at,
                    rows_in=rows_in,
                    rows_out=rows_in - sum(removed.values()),
                    removed_rows=removed,
                    removed_people=0 if purpose == "exempt" else people,
                    validation_ok=purpose != "exempt",
                    output_hashes={f"{extract}.csv": f"{rng.getrandbits(256):064x}"},
                    legal_basis=basis,
                    legal_reference=reference,
                    dag_id=dag_id,
                    task_id=task_id,
                    run_id=f"scheduled__{checked:%Y-%m-%dT%H:%M}",
                    max_age_seconds=None if purpose == "exempt" else 48 * 3600,
                    # An exempt copy is not validated, so nobody counted its people.
                    people_out=None if purpose == "exempt" else (rows_in - sum(removed.values())) // 3,
                ),
                now=checked + timedelta(hours=2, minutes=rng.randint(0, 50)),
            )
    store.dispose()
    ledger.dispose()
    _publish_at(url, published)
    _reviews(url, now.date())


def _publish_at(url: str, published: dict[int, datetime | None]) -> None:
    """Each version requested an hour before its check and published when it was (not today)."""
    engine = sa.create_engine(url)
    v = versions_table.c
    with engine.begin() as conn:
        checked = dict(conn.execute(sa.select(v.id, v.checked_at)).all())
        for version_id, moment in published.items():
            requested = checked[version_id].replace(tzinfo=UTC) - timedelta(hours=1)
            conn.execute(
                versions_table.update().where(v.id == version_id).values(published_at=moment, requested_at=requested)
            )
    engine.dispose()


def _approvals(url: str, recorded: datetime, today: date) -> None:
    """The court order the exempt flow cites, and two approvals no longer in force."""
    register = ApprovalRegister(url)
    approvals = (
        ("HC-ORDER-2026-A17", "court_order", today + timedelta(days=60), "Order of the High Court"),
        ("HC-ORDER-2025-B03", "court_order", recorded.date() + timedelta(days=30), "Superseded by HC-ORDER-2026-A17"),
        ("CAG 24/CAG/0107", "cag_optout_disapplied", today + timedelta(days=300), "Withdrawn by the applicant"),
    )
    for reference, basis, expires, note in approvals:
        register.add(
            reference,
            basis=basis,
            approved_by="Caldicott Guardian",
            expires=expires,
            note=note,
            recorded_by="Information Governance Lead",
            now=recorded,
        )
    register.revoke("CAG 24/CAG/0107", by="Information Governance Lead", now=recorded + timedelta(days=10))
    register.dispose()


def _reviews(url: str, today: date) -> None:
    register = FlowRegister(url)
    reviews = {
        "research_extract/export": ("DSA-2026-014", "DPIA-0231", today + timedelta(days=200)),
        "planning_extract/export": ("DSA-2025-088", "DPIA-0199", today - timedelta(days=12)),  # overdue
        "exempt_disclosure/export": ("HC-ORDER-2026-A17", "DPIA-0240", today + timedelta(days=20)),
    }
    for flow, (dsa, dpia, review) in reviews.items():
        register.record(flow, dsa=dsa, dpia=dpia, approved_by="Caldicott Guardian", review_date=review)
    register.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--url", default=os.environ.get("OPTOUT_STORE_URL"))
    args = parser.parse_args()
    url = args.url or f"sqlite:///{Path(__file__).resolve().parents[1] / 'var' / 'demo' / 'optout' / 'store.sqlite'}"
    seed_history(url, datetime.now(UTC), days=args.days)
    print(f"{args.days} days of synthetic history added to {url}")


if __name__ == "__main__":
    main()
