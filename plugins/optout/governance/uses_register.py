"""The data uses register, for publication ("no surprises"): one row per flow over a period, with small
numbers suppressed so no count identifies a person.

Suppression rule (the default, as NHS England publishes its own registers): a count of 0 is shown as 0;
1 to 7 as ``<8``; 8 and above rounded to the nearest 5 (halves up: 8 -> 10, 12 -> 10, 13 -> 15). Both the
threshold and the rounding base can be changed (``suppress(count, below=, base=)``). Counts of
disclosures are suppressed too: a single disclosure in a quarter to a small recipient says something.

"People included" is the distinct people in what was sent, as the passing proof counted them (a person
key, else the NHS number: :mod:`optout.headcount`) and the gate recorded in the ledger. A flow's figure
is its largest disclosure's: the ledger keeps counts, never who, so people sent again cannot be told from
new people, and a sum would count a monthly flow's one cohort twelve times a year (the figure is a floor
on the distinct people, and for a recurring flow of one cohort, close to it). When any of a flow's
disclosures has no count (entries recorded before the count existed, an extract copied unfiltered, a
home that cannot count), the cell says "not recorded" rather than a number that may be too small. The
records sent are published too, suppressed the same way.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from optout.governance.document import Table
from optout.governance.flows import Flow, flow_id
from optout.governance.pack_html import table_html
from optout.governance.page import LONDON
from optout.ledger import LedgerEntry

BELOW, BASE = 8, 5
HEADER = [
    "Recipient",
    "Purpose",
    "Legal basis",
    "Period",
    "Disclosures",
    "Records sent",
    "People included",
    "People removed",
]
NOT_RECORDED = "not recorded"


def suppress(count: int, *, below: int = BELOW, base: int = BASE) -> str:
    """``0``, ``<8`` for 1-7, else rounded to the nearest ``base`` (halves up)."""
    if count < 0:
        raise ValueError("a count cannot be negative")
    if count == 0:
        return "0"
    if count < below:
        return f"<{below}"
    return f"{(count + base // 2) // base * base:,}" if base > 1 else f"{count:,}"


@dataclass(frozen=True)
class UseRow:
    recipient: str
    purpose: str
    legal_basis: str
    first: datetime
    last: datetime
    disclosures: int
    rows_sent: int
    people_removed: int
    people_included: int | None = None  # None: some disclosure of the flow has no count

    def cells(self, *, below: int = BELOW, base: int = BASE) -> list[str]:
        period = f"{self.first.astimezone(LONDON):%b %Y} to {self.last.astimezone(LONDON):%b %Y}"
        return [
            self.recipient,
            self.purpose.replace("_", " "),
            self.legal_basis.replace("_", " "),
            period,
            *(suppress(n, below=below, base=base) for n in (self.disclosures, self.rows_sent)),
            NOT_RECORDED if self.people_included is None else suppress(self.people_included, below=below, base=base),
            suppress(self.people_removed, below=below, base=base),
        ]


def uses(entries: Sequence[LedgerEntry], flows: Sequence[Flow] = ()) -> list[UseRow]:
    """One row per flow (``dag_id/task_id``) that disclosed in ``entries``; basis from the flow's declaration."""
    by_flow: dict[str, list[LedgerEntry]] = defaultdict(list)
    for entry in entries:
        by_flow[flow_id(entry.disclosure.dag_id, entry.disclosure.task_id or entry.disclosure.extract)].append(entry)
    known = {flow.flow: flow for flow in flows}
    rows = []
    for name, sent in sorted(by_flow.items()):
        last = max(sent, key=lambda e: e.recorded_at).disclosure
        flow = known.get(name)
        basis = last.legal_basis or (flow.legal_basis if flow else None)
        rows.append(
            UseRow(
                recipient=last.recipient,
                purpose=last.purpose,
                legal_basis=basis or _default_basis(last.purpose),
                first=min(e.recorded_at for e in sent),  # ledger order is append order, not always time order
                last=max(e.recorded_at for e in sent),
                disclosures=len(sent),
                rows_sent=sum(e.disclosure.rows_out for e in sent),
                people_removed=sum(e.disclosure.removed_people for e in sent),
                people_included=_people_included(sent),
            )
        )
    return sorted(rows, key=lambda r: (r.recipient, r.purpose))


def to_csv(rows: Sequence[UseRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(row.cells() for row in rows)
    return out.getvalue()


def to_html(rows: Sequence[UseRow], *, organisation: str, period: str) -> str:
    table = Table(
        f"Data uses register: {organisation}, {period}",
        HEADER,
        [row.cells() for row in rows],
        empty="No confidential patient information was disclosed for secondary uses in this period.",
        numeric=(4, 5, 6, 7),
    )
    return (
        f'<!doctype html><html lang="en-GB"><head><meta charset="utf-8"><title>Data uses register: '
        f"{escape(organisation)}</title></head><body><main><h1>Data uses register</h1>"
        f"<p>{escape(organisation)}: every flow of confidential patient information that left us, {escape(period)}. "
        f"Counts of 1 to {BELOW - 1} are shown as &lt;{BELOW}; larger counts are rounded to the nearest {BASE}.</p>"
        f"{table_html(table)}</main></body></html>"
    )


def _people_included(sent: Sequence[LedgerEntry]) -> int | None:
    """The people of a flow's largest disclosure, or None when one of its disclosures has no count."""
    counts = [e.disclosure.people_out for e in sent]
    return None if any(n is None for n in counts) else max(n for n in counts if n is not None)


def _default_basis(purpose: str) -> str:
    """What stands behind a filtered disclosure when no exemption is named: the opt-out was applied."""
    return "opt-out applied" if purpose not in ("direct_care", "exempt") else "—"
