"""The register of flows: every route by which confidential patient information leaves, and its paperwork.

A *flow* is one gated export task, named ``dag_id/task_id`` (Airflow allows neither ``/`` in a DAG id
nor in a task id, so the name is unambiguous). What it sends and why comes from what the DAG declares
(the task's opt-out tag: purpose, extract, legal basis; its recipient) and, for a flow no DAG declares
any more, from the ledger's disclosures. What governance staff record about it (the data sharing
agreement, the DPIA, who approved it and when it is due for review) lives in the ``optout_flow_reviews``
table (opened through :mod:`optout.db`): append-only, the newest record of a flow wins, so the history
of who approved what stays.

With ``[optout] block_overdue_flows`` set, a flow past its review date (or never reviewed) may not send:
:func:`require_reviewed` is what the gate calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

import sqlalchemy as sa

from optout import config, db
from optout.errors import InputError, PolicyRefusal
from optout.ledger import Ledger, LedgerEntry

OK, DUE, OVERDUE, UNREVIEWED = "in review", "due soon", "overdue", "not reviewed"
DUE_DAYS = 30  # a review this close is shown as due soon
_TEXT = 500

metadata = sa.MetaData()
reviews_table = sa.Table(
    "optout_flow_reviews",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flow", sa.String(_TEXT), nullable=False, index=True),
    sa.Column("dsa", sa.String(_TEXT), nullable=False),
    sa.Column("dpia", sa.String(_TEXT), nullable=False),
    sa.Column("approved_by", sa.String(_TEXT), nullable=False),
    sa.Column("review_date", sa.Date, nullable=False),
    sa.Column("recorded_at", sa.String(40), nullable=False),
)


class FlowReviewOverdue(PolicyRefusal):
    """The flow's review date has passed (or it was never reviewed) and overdue flows are blocked."""


@dataclass(frozen=True)
class DeclaredFlow:
    """What a DAG declares about one export task (read from the serialized DAG)."""

    dag_id: str
    task_id: str
    purpose: str
    extract: str | None = None
    legal_basis: str | None = None
    legal_reference: str | None = None
    recipient: str | None = None
    scope: str = "confidential patient information"

    @property
    def flow(self) -> str:
        return flow_id(self.dag_id, self.task_id)


@dataclass(frozen=True)
class Review:
    """What governance staff recorded about a flow."""

    flow: str
    dsa: str
    dpia: str
    approved_by: str
    review_date: date
    recorded_at: datetime


@dataclass(frozen=True)
class Flow:
    """One row of the register: the declaration, the review and what the ledger saw."""

    flow: str
    declared: DeclaredFlow | None
    review: Review | None
    disclosures: int = 0
    last_disclosure: LedgerEntry | None = None

    @property
    def purpose(self) -> str:
        if self.declared is not None:
            return self.declared.purpose
        return self.last_disclosure.disclosure.purpose if self.last_disclosure else "—"

    @property
    def legal_basis(self) -> str | None:
        if self.declared is not None:
            return self.declared.legal_basis
        return self.last_disclosure.disclosure.legal_basis if self.last_disclosure else None

    @property
    def recipient(self) -> str:
        if self.declared is not None and self.declared.recipient:
            return self.declared.recipient
        return self.last_disclosure.disclosure.recipient if self.last_disclosure else "—"

    @property
    def extract(self) -> str:
        if self.last_disclosure is not None:
            return self.last_disclosure.disclosure.extract
        return self.declared.extract or "—" if self.declared is not None else "—"

    def status(self, today: date | None = None) -> str:
        """``in review``, ``due soon`` (within 30 days), ``overdue`` or ``not reviewed``."""
        if self.review is None:
            return UNREVIEWED
        left = (self.review.review_date - (today or _today())).days
        return OVERDUE if left < 0 else DUE if left <= DUE_DAYS else OK

    def as_json(self, today: date | None = None) -> dict[str, object]:
        review = self.review
        return {
            "flow": self.flow,
            "declared": self.declared is not None,
            "purpose": self.purpose,
            "legal_basis": self.legal_basis,
            "recipient": self.recipient,
            "extract": self.extract,
            "dsa": review.dsa if review else None,
            "dpia": review.dpia if review else None,
            "approved_by": review.approved_by if review else None,
            "review_date": review.review_date.isoformat() if review else None,
            "status": self.status(today),
            "disclosures": self.disclosures,
            "last_disclosure": self.last_disclosure.recorded_at.isoformat() if self.last_disclosure else None,
        }


def flow_id(dag_id: str | None, task_id: str | None) -> str:
    """``dag_id/task_id``; a disclosure recorded outside Airflow is ``-/<task or extract>``."""
    return f"{dag_id or '-'}/{task_id or '-'}"


class FlowRegister:
    """The governance records of flows, in the store's database."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or config.store_url()
        self._engine = db.engine(self.url)
        with db.transaction(self._engine, write=True) as conn:
            db.serialise(conn, reviews_table.name)
            metadata.create_all(conn)

    def record(
        self,
        flow: str,
        *,
        dsa: str,
        dpia: str,
        approved_by: str,
        review_date: date,
        now: datetime | None = None,
    ) -> Review:
        """Record a flow's DSA, DPIA, approver and next review date (a new record; the old ones stay)."""
        if flow.count("/") != 1 or not all(flow.split("/")):
            raise InputError(f"{flow!r} is not a flow; name it DAG_ID/TASK_ID (see `optout flows list`)", field="FLOW")
        for name, value in (("--dsa", dsa), ("--dpia", dpia), ("--approved-by", approved_by)):
            if not value.strip():
                raise InputError("must not be empty", field=name)
            if len(value) > _TEXT:
                raise InputError(f"is longer than {_TEXT} characters", field=name)
        review = Review(flow, dsa.strip(), dpia.strip(), approved_by.strip(), review_date, now or datetime.now(UTC))
        with db.transaction(self._engine, write=True) as conn:
            conn.execute(
                reviews_table.insert().values(
                    flow=review.flow,
                    dsa=review.dsa,
                    dpia=review.dpia,
                    approved_by=review.approved_by,
                    review_date=review.review_date,
                    recorded_at=review.recorded_at.isoformat(timespec="seconds"),
                )
            )
        return review

    def reviews(self) -> dict[str, Review]:
        """The newest record of each flow."""
        with db.transaction(self._engine) as conn:
            rows = conn.execute(sa.select(reviews_table).order_by(reviews_table.c.id)).all()
        latest = {}
        for row in rows:
            latest[row.flow] = Review(
                row.flow,
                row.dsa,
                row.dpia,
                row.approved_by,
                row.review_date,
                datetime.fromisoformat(row.recorded_at),
            )
        return latest

    def dispose(self) -> None:
        self._engine.dispose()


def build_register(
    declared: Iterable[DeclaredFlow], url: str | None = None, *, entries: list[LedgerEntry] | None = None
) -> list[Flow]:
    """Every flow a DAG declares, reviewed or not, and every flow the ledger saw, sorted by name."""
    register = FlowRegister(url)
    try:
        reviews = register.reviews()
    finally:
        register.dispose()
    if entries is None:
        ledger = Ledger(url)
        try:
            entries = ledger.entries()
        finally:
            ledger.dispose()
    flows: dict[str, Flow] = {d.flow: Flow(d.flow, d, reviews.get(d.flow)) for d in declared}
    for entry in entries:
        name = flow_id(entry.disclosure.dag_id, entry.disclosure.task_id or entry.disclosure.extract)
        known = flows.get(name) or Flow(name, None, reviews.get(name))
        flows[name] = replace(known, disclosures=known.disclosures + 1, last_disclosure=entry)
    for name, review in reviews.items():
        flows.setdefault(name, Flow(name, None, review))
    return [flows[name] for name in sorted(flows)]


def require_reviewed(dag_id: str, task_id: str, url: str | None = None, *, today: date | None = None) -> Review:
    """Refuse a send on a flow whose review is overdue or was never recorded (the gate calls this when
    ``[optout] block_overdue_flows`` is set)."""
    name = flow_id(dag_id, task_id)
    register = FlowRegister(url)
    try:
        review = register.reviews().get(name)
    finally:
        register.dispose()
    if review is None:
        raise FlowReviewOverdue(
            f"flow {name!r} has no governance review recorded and overdue flows are blocked "
            f"([optout] block_overdue_flows): record its DSA, DPIA, approver and review date with "
            f"`optout flows set {name} --dsa REF --dpia REF --approved-by NAME --review YYYY-MM-DD`"
        )
    if review.review_date < (today or _today()):
        raise FlowReviewOverdue(
            f"flow {name!r} was due for review on {review.review_date:%Y-%m-%d} and overdue flows are blocked "
            f"([optout] block_overdue_flows): nothing was sent. Review it, then record the next date with "
            f"`optout flows set {name} --dsa REF --dpia REF --approved-by NAME --review YYYY-MM-DD`"
        )
    return review


def _today() -> date:
    return datetime.now(UTC).date()
