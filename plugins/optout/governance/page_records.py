"""The records governance staff keep, as sections of the governance page: the register of flows with
their reviews, and the approvals exemptions cite with their expiry (expired and revoked marked).
Counts, names and dates only; every value is escaped."""

from __future__ import annotations

from html import escape

from optout.governance.approvals import VALID
from optout.governance.flows import OVERDUE, UNREVIEWED
from optout.governance.overview import Overview


def flows_section(view: Overview) -> str:
    title = '<section aria-labelledby="flows"><h2 id="flows">Flows and their reviews</h2>'
    if not view.flows:
        return f"{title}<p>No flow is declared or recorded yet.</p></section>"
    today = view.now.date()
    header = "".join(
        f'<th scope="col">{h}</th>'
        for h in ("Flow", "Purpose", "Recipient", "DSA", "DPIA", "Approved by", "Review due", "State", "Disclosures")
    )
    rows = []
    for flow in view.flows:
        review, state = flow.review, flow.status(today)
        red = state in (OVERDUE, UNREVIEWED)
        cells = [
            flow.flow,
            flow.purpose + (f" ({flow.legal_basis})" if flow.legal_basis else ""),
            flow.recipient,
            review.dsa if review else "—",
            review.dpia if review else "—",
            review.approved_by if review else "—",
            f"{review.review_date:%d %b %Y}" if review else "—",
        ]
        shown = f'<strong class="state stale">{escape(state.upper())}</strong>' if red else escape(state)
        rows.append(
            f"<tr{' class=overdue' if red else ''}>"
            + "".join(f"<td>{escape(c)}</td>" for c in cells)
            + f"<td>{shown}</td><td>{flow.disclosures:,}</td></tr>"
        )
    return (
        f"{title}<p>Record a review with <code>optout flows set FLOW --dsa REF --dpia REF --approved-by NAME "
        "--review YYYY-MM-DD</code>.</p>"
        f"<table><caption>Every export the DAGs declare or the ledger saw</caption><thead><tr>{header}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def approvals_section(view: Overview) -> str:
    title = '<section aria-labelledby="approvals"><h2 id="approvals">Approvals behind exemptions</h2>'
    how = (
        "<p>Every exempt disclosure cites one of these (the spec's <code>legal_reference</code>); a missing, "
        "revoked or expired approval, or one for another legal basis, blocks the export. Record one with "
        "<code>optout approvals add REF --basis BASIS --approved-by NAME --expires YYYY-MM-DD</code>, withdraw "
        "it with <code>optout approvals revoke REF</code>.</p>"
    )
    if not view.approvals:
        return f"{title}{how}<p>No approval is recorded: every exempt export is refused.</p></section>"
    today = view.now.date()
    header = "".join(
        f'<th scope="col">{h}</th>'
        for h in ("Reference", "Legal basis", "Approved by", "Expires", "State", "Recorded by", "Note")
    )
    rows = []
    for approval in view.approvals:
        state = approval.state(today)
        shown = escape(state) if state == VALID else f'<strong class="state stale">{escape(state.upper())}</strong>'
        cells = (approval.reference, approval.legal_basis, approval.approved_by, f"{approval.expires:%d %b %Y}")
        rows.append(
            f"<tr{'' if state == VALID else ' class=overdue'}>"
            + "".join(f"<td>{escape(c)}</td>" for c in cells)
            + f"<td>{shown}</td><td>{escape(approval.recorded_by)}, {approval.recorded_at:%d %b %Y}</td>"
            f"<td>{escape(approval.note or '')}</td></tr>"
        )
    return (
        f"{title}{how}<table><caption>Every approval, newest record of each</caption><thead><tr>{header}</tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table></section>"
    )
