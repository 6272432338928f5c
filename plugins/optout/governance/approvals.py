"""Approvals recorded by governance staff: the one thing an exempt disclosure may cite.

An exemption from the opt-out (a court order, a CAG approval that set the opt-out aside, ...) is only as
good as the decision behind it. So the spec's ``legal_reference`` of an exempt extract names an approval
that governance staff recorded with ``optout approvals add REF --basis BASIS --approved-by NAME
--expires YYYY-MM-DD``; for ``cag_optout_disapplied`` the CAG reference is that approval. The gate
(:func:`require_approval`) refuses to send when the approval is missing, revoked, expired (its expiry
date is before the day of the send) or recorded for another legal basis.

Records live in the ``optout_approvals`` table (opened through :mod:`optout.db`), append-only: adding
the same reference again renews it, revoking appends a revocation, and the newest record of a reference
wins, so the history of who decided what stays. Each change is also an event in the hash-chained ledger
(who, when), written first: a change the ledger could not record is not made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import sqlalchemy as sa

from optout import config, db
from optout.errors import InputError, PolicyRefusal
from optout.purpose import LegalBasis, parse_legal_basis

KIND = "approval"
ADDED, REVOKED = "added", "revoked"
VALID, EXPIRED = "valid", "expired"
_TEXT = 500

metadata = sa.MetaData()
approvals_table = sa.Table(
    "optout_approvals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("reference", sa.String(_TEXT), nullable=False, index=True),
    sa.Column("action", sa.String(12), nullable=False),
    sa.Column("legal_basis", sa.String(80), nullable=False),
    sa.Column("approved_by", sa.String(_TEXT), nullable=False),
    sa.Column("expires", sa.Date, nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("recorded_by", sa.String(_TEXT), nullable=False),
    sa.Column("recorded_at", sa.String(40), nullable=False),
)


class ApprovalRefused(PolicyRefusal):
    """An exempt disclosure cites no valid approval: missing, revoked, expired or for another basis."""


@dataclass(frozen=True)
class Approval:
    """The newest record of one approval reference."""

    reference: str
    legal_basis: str
    approved_by: str
    expires: date
    note: str | None
    recorded_by: str
    recorded_at: datetime
    revoked: bool = False

    def state(self, today: date | None = None) -> str:
        """``valid``, ``expired`` (its expiry date has passed) or ``revoked``."""
        if self.revoked:
            return REVOKED
        return EXPIRED if self.expires < (today or _today()) else VALID

    def as_json(self, today: date | None = None) -> dict[str, object]:
        return {
            "reference": self.reference,
            "legal_basis": self.legal_basis,
            "approved_by": self.approved_by,
            "expires": self.expires.isoformat(),
            "note": self.note,
            "recorded_by": self.recorded_by,
            "recorded_at": self.recorded_at.isoformat(),
            "state": self.state(today),
        }


class ApprovalRegister:
    """The approvals in the store's database; every change also goes to the ledger."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or config.store_url()
        self._engine = db.engine(self.url)
        with db.transaction(self._engine, write=True) as conn:
            db.serialise(conn, approvals_table.name)
            metadata.create_all(conn)

    def add(
        self,
        reference: str,
        *,
        basis: str,
        approved_by: str,
        expires: date,
        note: str | None = None,
        recorded_by: str,
        now: datetime | None = None,
    ) -> Approval:
        """Record (or renew) an approval; one whose expiry date has already passed is refused."""
        moment = now or datetime.now(UTC)
        legal_basis = parse_legal_basis(basis, field="--basis")
        if expires < moment.date():
            raise InputError(f"{expires:%Y-%m-%d} is in the past: give the date the approval ends", field="--expires")
        approval = Approval(
            _text(reference, "REF"),
            legal_basis.value,
            _text(approved_by, "--approved-by"),
            expires,
            " ".join(note.split()) or None if note else None,
            _text(recorded_by, "--by"),
            moment,
        )
        self._record(approval, ADDED)
        return approval

    def revoke(self, reference: str, *, by: str, now: datetime | None = None) -> Approval:
        """Revoke an approval: exports citing it are refused from now on (the record of it stays)."""
        ref = _text(reference, "REF")
        known = self.approvals().get(ref)
        if known is None:
            raise InputError(f"no approval {ref!r} is recorded; see `optout approvals list`", field="REF")
        if known.revoked:
            raise InputError(f"approval {ref!r} is already revoked", field="REF")
        revoked = Approval(
            ref,
            known.legal_basis,
            known.approved_by,
            known.expires,
            known.note,
            _text(by, "--by"),
            now or datetime.now(UTC),
            revoked=True,
        )
        self._record(revoked, REVOKED)
        return revoked

    def approvals(self) -> dict[str, Approval]:
        """The newest record of each reference, by reference."""
        with db.transaction(self._engine) as conn:
            rows = conn.execute(sa.select(approvals_table).order_by(approvals_table.c.id)).all()
        return {
            row.reference: Approval(
                row.reference,
                row.legal_basis,
                row.approved_by,
                row.expires,
                row.note,
                row.recorded_by,
                datetime.fromisoformat(row.recorded_at),
                revoked=row.action == REVOKED,
            )
            for row in rows
        }

    def dispose(self) -> None:
        self._engine.dispose()

    def _record(self, approval: Approval, action: str) -> None:
        """The ledger event first (who, when, what), then the row the gate reads."""
        from optout.ledger import Event, Ledger

        detail: dict[str, str | int] = {
            "action": action,
            "legal_basis": approval.legal_basis,
            "approved_by": approval.approved_by,
            "expires": approval.expires.isoformat(),
            "recorded_by": approval.recorded_by,
        }
        if approval.note:
            detail["note"] = approval.note  # the ledger's guard refuses text that looks like an NHS number
        ledger = Ledger(self.url)
        try:
            ledger.record_event(Event(KIND, approval.reference, detail), now=approval.recorded_at)
        finally:
            ledger.dispose()
        with db.transaction(self._engine, write=True) as conn:
            conn.execute(
                approvals_table.insert().values(
                    reference=approval.reference,
                    action=action,
                    legal_basis=approval.legal_basis,
                    approved_by=approval.approved_by,
                    expires=approval.expires,
                    note=approval.note,
                    recorded_by=approval.recorded_by,
                    recorded_at=approval.recorded_at.isoformat(timespec="seconds"),
                )
            )


def read_approvals(url: str | None = None) -> list[Approval]:
    """Every approval's newest record, by reference."""
    register = ApprovalRegister(url)
    try:
        found = register.approvals()
    finally:
        register.dispose()
    return [found[ref] for ref in sorted(found)]


def require_approval(
    reference: str | None, basis: str | LegalBasis | None, url: str | None = None, *, today: date | None = None
) -> Approval:
    """The valid approval an exempt disclosure cites, or :class:`ApprovalRefused` saying how to record one."""
    ref = (reference or "").strip()
    wanted = str(basis.value if isinstance(basis, LegalBasis) else basis or "")
    fix = f"`optout approvals add {ref or 'REF'} --basis {wanted or 'BASIS'} --approved-by NAME --expires YYYY-MM-DD`"
    found = {a.reference: a for a in read_approvals(url)}.get(ref)
    if found is None:
        raise ApprovalRefused(
            f"the exemption cites approval {ref!r}, which governance staff have not recorded: nothing was sent. "
            f"Once the approval is confirmed, record it with {fix}"
        )
    day = today or _today()
    state = found.state(day)
    if state == REVOKED:
        raise ApprovalRefused(
            f"approval {ref!r} was revoked by {found.recorded_by} on {found.recorded_at:%Y-%m-%d}: nothing was sent. "
            f"Only a new decision can allow it: {fix}"
        )
    if state == EXPIRED:
        raise ApprovalRefused(
            f"approval {ref!r} expired on {found.expires:%Y-%m-%d}: nothing was sent. If it was renewed, record "
            f"the new expiry with {fix}"
        )
    if found.legal_basis != wanted:
        raise ApprovalRefused(
            f"approval {ref!r} was recorded for legal basis {found.legal_basis!r}, but the spec claims {wanted!r}: "
            "nothing was sent. Correct the spec's legal_basis, or record the approval for that basis with " + fix
        )
    return found


def _text(value: str, field: str) -> str:
    text = " ".join((value or "").split())
    if len(text) < 2:
        raise InputError("must not be empty", field=field)
    if len(text) > _TEXT:
        raise InputError(f"is longer than {_TEXT} characters", field=field)
    return text


def _today() -> date:
    return datetime.now(UTC).date()
