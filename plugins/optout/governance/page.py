"""The governance page's HTML, rendered from an :class:`~optout.governance.overview.Overview`.

Written for someone who has never seen Airflow: is the opt-out list fresh, what did the last refresh
find, is anything waiting for approval, and what left the organisation, why, and was it proven.
Counts, names and dates only; every value is escaped. Airflow serves it (``optout.airflow.page``).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from html import escape
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from optout import config
from optout.governance.overview import NightlyState, Overview
from optout.governance.page_records import approvals_section, flows_section
from optout.proof_text import disclosure_sentence
from optout.purpose import Purpose
from optout.store import VersionInfo

LONDON = ZoneInfo("Europe/London")
_CHART_W, _CHART_H, _BAR_GAP, _BAR_MAX = 480, 160, 6, 64


FAILED, PASSED, NOT_APPLICABLE = "FAILED", "passed", "not applicable"
NOT_FILTERED = frozenset({Purpose.DIRECT_CARE.value, Purpose.EXEMPT.value})  # copied unfiltered, nothing to prove


def proof_label(purpose: str, ok: bool) -> str:
    """Direct care and exemptions are copied unfiltered: there is no proof to fail, so say not applicable."""
    if purpose in NOT_FILTERED:
        return NOT_APPLICABLE
    return PASSED if ok else FAILED


def london(moment: datetime | None) -> str:
    return moment.astimezone(LONDON).strftime("%d %b %Y %H:%M %Z") if moment else "—"


def render(view: Overview, *, docs_link: str = "data-docs/{id}/index.html") -> str:
    """The whole page as escaped HTML; ``docs_link`` turns a ledger entry id into its Data Docs URL."""
    parts = [
        _HEAD,
        "<h1>National Data Opt-out</h1>",
        '<p class="lead">Whether patients\' opt-out choices are applied to the data that leaves us, '
        "and the record of every disclosure.</p>",
        _list_section(view),
        _nightly_section(view.nightly),
        flows_section(view),
        approvals_section(view),
        _uncovered_section(view),
        _refresh_section(view),
        _disclosure_section(view, docs_link),
        _pack_section(view),
        "</main></body></html>",
    ]
    return "\n".join(parts)


def _list_section(view: Overview) -> str:
    current = view.current
    if current is None:
        return (
            '<section aria-labelledby="list"><h2 id="list">Opt-out list</h2>'
            '<p class="state stale"><strong>NO LIST</strong>: every export for research or planning is refused '
            "until the first refresh.</p></section>"
        )
    state = (
        '<strong class="state fresh">FRESH</strong>'
        if view.fresh
        else '<strong class="state stale">STALE</strong>: exports for research or planning are refused until the '
        "list is refreshed"
    )
    rows = [
        ("State", state),
        ("List version", escape(str(current.id))),
        ("Checked by NHS England at", escape(london(current.checked_at))),
        ("Age", escape(config.format_duration(current.age(view.now)))),
        ("Maximum age", escape(config.format_duration(view.max_age))),
    ]
    body = "".join(f'<tr><th scope="row">{label}</th><td>{value}</td></tr>' for label, value in rows)
    return (
        '<section aria-labelledby="list"><h2 id="list">Opt-out list</h2>'
        f'<table class="facts"><caption>The list in use now</caption>{body}</table></section>'
    )


def _refresh_section(view: Overview) -> str:
    waiting = view.waiting
    note = (
        f'<p class="state stale"><strong>{len(waiting)} repl{"y" if len(waiting) == 1 else "ies"} waiting for '
        f"approval</strong> (version {', '.join(str(v.id) for v in waiting)}): the opted-out share changed more "
        "than expected, so the reply was held back. Inspect it, then run "
        "<code>optout check approve VERSION</code> or <code>optout check reject VERSION</code>.</p>"
        if waiting
        else "<p>No reply is waiting for approval.</p>"
    )
    header = "".join(
        f'<th scope="col">{h}</th>'
        for h in ("Version", "Requested", "Checked", "Status", "Cohort", "Cleared", "Opted out", "Share", "Why held")
    )
    rows = "".join(
        "<tr>"
        f"<td>{v.id}</td><td>{escape(london(v.requested_at))}</td><td>{escape(london(v.checked_at))}</td>"
        f"<td>{escape(v.status)}</td><td>{_n(v.cohort_count)}</td><td>{_n(v.cleared_count)}</td>"
        f"<td>{_n(v.opted_out_count)}</td><td>{_pct(v.opted_out_share)}</td><td>{_why_held(v)}</td>"
        "</tr>"
        for v in view.versions
    )
    table = (
        f"<table><caption>Refreshes, newest first</caption><thead><tr>{header}</tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        if view.versions
        else "<p>No refresh has run yet.</p>"
    )
    return (
        '<section aria-labelledby="refresh"><h2 id="refresh">Last refreshes</h2>'
        f"{note}{_chart(view.shares)}{table}</section>"
    )


def _why_held(version: VersionInfo) -> str:
    """Why a reply was quarantined or a request failed, as the refresh recorded it (the statistics behind a
    hold, the service's rejection, a MESH report, or a late reply superseded): counts and words only."""
    if version.status in {"quarantined", "failed", "rejected"} and version.note:
        return escape(version.note)
    return ""


def _chart(shares: list[tuple[int, float]]) -> str:
    """A small bar chart (inline SVG) of the opted-out share per version; the table above holds the figures."""
    if not shares:
        return ""
    top = max(max(share for _, share in shares), 0.01)
    width = min((_CHART_W - _BAR_GAP) / len(shares) - _BAR_GAP, _BAR_MAX)
    bars = []
    for i, (version, share) in enumerate(shares):
        height = (_CHART_H - 30) * share / top
        x = _BAR_GAP + i * (width + _BAR_GAP)
        y = _CHART_H - 15 - height
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" class="bar">'
            f"<title>version {version}: {_pct(share)}</title></rect>"
            f'<text x="{x + width / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle">{_pct(share)}</text>'
            f'<text x="{x + width / 2:.1f}" y="{_CHART_H - 2}" text-anchor="middle">v{version}</text>'
        )
    label = "Opted-out share per list version, oldest to newest: " + ", ".join(
        f"version {v} {_pct(s)}" for v, s in shares
    )
    return (
        f'<figure><svg role="img" aria-label="{escape(label)}" width="{_CHART_W}" height="{_CHART_H}" '
        f'viewBox="0 0 {_CHART_W} {_CHART_H}">{"".join(bars)}</svg>'
        "<figcaption>Opted-out share across the last list versions</figcaption></figure>"
    )


def _disclosure_section(view: Overview, docs_link: str) -> str:
    integrity = (
        f'<p>Ledger: <strong class="state fresh">intact</strong> ({escape(view.ledger_message)}).</p>'
        if view.ledger_ok
        else f'<p class="state stale"><strong>LEDGER TAMPERED</strong>: {escape(view.ledger_message)}. '
        "Tell the information governance lead.</p>"
    )
    form = _filter_form(view)
    if not view.disclosures:
        return (
            '<section aria-labelledby="disclosures"><h2 id="disclosures">Disclosures</h2>'
            f"{integrity}{form}<p>Nothing has been disclosed yet.</p></section>"
            if not view.purposes
            else '<section aria-labelledby="disclosures"><h2 id="disclosures">Disclosures</h2>'
            f"{integrity}{form}<p>No disclosure matches this filter.</p></section>"
        )
    header = "".join(
        f'<th scope="col">{h}</th>'
        for h in (
            "When",
            "Extract",
            "Purpose",
            "Recipient",
            "List version (age of maximum)",
            "Rows sent",
            "Rows removed",
            "People removed",
            "Validation",
            "DAG run",
        )
    )
    rows = []
    for entry in view.disclosures:
        d = entry.disclosure
        basis = f" ({escape(d.legal_basis)})" if d.legal_basis else ""
        removed = ", ".join(
            f"{escape(why.replace('_', ' '))} {_n(count)}" for why, count in sorted(d.removed_rows.items()) if count
        )
        label = proof_label(d.purpose, d.validation_ok)
        proof = f'<strong class="state stale">{label}</strong>' if label == FAILED else label
        if d.data_docs:
            proof += f' — <a href="{escape(docs_link.format(id=entry.id))}">Data Docs</a>'
        proof += f"<br><small>{escape(disclosure_sentence(d))}</small>"
        for item in d.scan_excluded or []:  # a column the spec kept out of the leak scan, and why
            where, why = f"{item.get('table')}.{item.get('column')}", item.get("reason", "")
            proof += f"<br><small>not scanned for NHS numbers: {escape(where)} ({escape(str(why))})</small>"
        rows.append(
            "<tr>"
            f"<td>{escape(london(entry.recorded_at))}</td><td>{escape(d.extract)}</td>"
            f"<td>{escape(d.purpose)}{basis}</td><td>{escape(d.recipient)}</td>"
            f"<td>{_version_cell(d.version_id, entry.version_age_seconds, d.max_age_seconds)}</td>"
            f"<td>{_n(d.rows_out)}</td><td>{removed or '0'}</td><td>{_n(d.removed_people)}</td><td>{proof}</td>"
            f"<td>{_run_link(d.dag_id, d.run_id)}</td></tr>"
        )
    t = view.matching
    totals = (
        f"<p class=totals>{_n(t.disclosures)} disclosure(s) match: {_n(t.rows_sent)} rows sent, "
        f"{_n(t.rows_removed)} rows and {_n(t.people_removed)} people removed. "
        f"Page {view.filter.page} of {view.pages}.</p>"
    )
    return (
        '<section aria-labelledby="disclosures"><h2 id="disclosures">Disclosures</h2>'
        f"{integrity}{form}{totals}<table><caption>Every gated export, newest first</caption>"
        f"<thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>{_pager(view)}</section>"
    )


def _filter_form(view: Overview) -> str:
    f = view.filter

    def options(values: list[str], chosen: str | None) -> str:
        items = ['<option value="">any</option>'] + [
            f'<option value="{escape(v)}"{" selected" if v == chosen else ""}>{escape(v)}</option>' for v in values
        ]
        return "".join(items)

    def day(value: date | None) -> str:
        return value.isoformat() if value else ""

    return (
        '<form class="filter" method="get" action="#disclosures">'
        f'<label>From <input type="date" name="since" value="{day(f.since)}"></label> '
        f'<label>To <input type="date" name="until" value="{day(f.until)}"></label> '
        f'<label>Purpose <select name="purpose">{options(view.purposes, f.purpose)}</select></label> '
        f'<label>Recipient <select name="recipient">{options(view.recipients, f.recipient)}</select></label> '
        '<button type="submit">Show</button></form>'
    )


def _pager(view: Overview) -> str:
    f = view.filter
    query = {
        k: v
        for k, v in (("since", f.since), ("until", f.until), ("purpose", f.purpose), ("recipient", f.recipient))
        if v
    }

    def link(page: int, text: str) -> str:
        return f'<a href="?{escape(urlencode({**query, "page": page}))}#disclosures">{text}</a>'

    parts = []
    if f.page > 1:
        parts.append(link(f.page - 1, "&larr; newer"))
    if f.page < view.pages:
        parts.append(link(f.page + 1, "older &rarr;"))
    return f'<nav class="pager" aria-label="Disclosure pages">{" ".join(parts)}</nav>' if parts else ""


def _run_link(dag_id: str | None, run_id: str | None) -> str:
    """Airflow's own page of the run that sent it (the UI's route, from the server root)."""
    if not dag_id or not run_id:
        return "—"
    return f'<a href="/dags/{quote(dag_id)}/runs/{quote(run_id)}">{escape(dag_id)}</a>'


def _nightly_section(nightly: NightlyState | None) -> str:
    title = '<section aria-labelledby="nightly"><h2 id="nightly">Nightly refresh</h2>'
    if nightly is None:
        return f"{title}<p>Airflow's state could not be read here.</p></section>"
    if not nightly.found:
        return (
            f'{title}<p class="state stale"><strong>NOT DEPLOYED</strong>: no DAG optout_nightly_refresh is '
            "loaded, so the list is not refreshed.</p></section>"
        )
    paused = (
        '<strong class="state stale">PAUSED</strong>: unpause it in Airflow or the list goes stale'
        if nightly.paused
        else '<strong class="state fresh">running</strong>'
    )
    rows = [
        ("Schedule", paused),
        ("Next run", escape(london(nightly.next_run)) if not nightly.paused else "—"),
        ("Last run", f"{escape(london(nightly.last_run))} ({escape(nightly.last_state or '—')})"),
        (
            "Last failure",
            f'<span class="state stale">{escape(london(nightly.last_failure))}</span>'
            if nightly.last_failure
            else "none",
        ),
    ]
    body = "".join(f'<tr><th scope="row">{label}</th><td>{value}</td></tr>' for label, value in rows)
    return f'{title}<table class="facts"><caption>optout_nightly_refresh</caption>{body}</table></section>'


def _uncovered_section(view: Overview) -> str:
    title = '<section aria-labelledby="uncovered"><h2 id="uncovered">Not covered by the opt-out checks</h2>'
    if view.uncovered is None:
        return f"{title}<p>Airflow's DAGs could not be read here.</p></section>"
    if not view.uncovered:
        return (
            f"{title}<p>Every DAG is declared as handling confidential patient information and checked.</p></section>"
        )
    rows = "".join(
        f"<tr><td>{escape(u.dag_id)}</td><td>{escape(u.task_id or 'whole DAG')}</td><td>{escape(u.reason)}</td></tr>"
        for u in view.uncovered
    )
    return (
        f"{title}<p>What the policy does not look at, so nobody assumes it does. Arbitrary Python in a task "
        "is never visible to the policy: the gate and the ledger see only what is sent through them.</p>"
        '<table><caption>DAGs and tasks outside the checks</caption><thead><tr><th scope="col">DAG</th>'
        f'<th scope="col">Task</th><th scope="col">Why</th></tr></thead><tbody>{rows}</tbody></table></section>'
    )


def _pack_section(view: Overview) -> str:
    year_ago = (view.now - timedelta(days=365)).date().isoformat()
    return (
        '<section aria-labelledby="pack"><h2 id="pack">Evidence pack</h2>'
        "<p>For the annual review and the DSPT return: refreshes and freshness, disclosures, exemptions, "
        "quarantined replies and ledger integrity.</p>"
        '<form method="get" action="evidence-pack">'
        f'<label>From <input type="date" name="since" value="{year_ago}" required></label> '
        f'<label>To <input type="date" name="until" value="{view.now.date().isoformat()}"></label> '
        '<label>Format <select name="format"><option value="pdf">PDF</option><option value="html">HTML</option>'
        '</select></label> <button type="submit">Download</button></form></section>'
    )


def _n(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _pct(share: float | None) -> str:
    return "—" if share is None else f"{share:.1%}"


_HEAD = """<!doctype html>
<html lang="en-GB"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>National Data Opt-out</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Arial,sans-serif;margin:0;color:#212b32;background:#fff}
main{max-width:72rem;margin:0 auto;padding:1rem 1.5rem}
h1{font-size:1.8rem;margin:.5rem 0}h2{font-size:1.3rem;margin-top:2rem;border-bottom:2px solid #d8dde0}
.lead{color:#4c6272}
table{border-collapse:collapse;margin:.5rem 0;min-width:20rem}
caption{text-align:left;font-weight:600;padding:.25rem 0}
th,td{border:1px solid #d8dde0;padding:.3rem .6rem;text-align:left}
td{font-variant-numeric:tabular-nums}
thead th,.facts th{background:#f0f4f5}
.state.fresh{color:#006435}.state.stale{color:#a00000}
strong.state{font-size:1.1rem;letter-spacing:.05em}
.bar{fill:#005eb8}svg text{font-size:11px;fill:#212b32}
a{color:#005eb8}tr.overdue td{background:#fde8e6}.filter,.pager{margin:.5rem 0}.filter label{margin-right:.5rem}
</style></head><body><main>"""


def _version_cell(version_id: int | None, age_seconds: int | None, max_age_seconds: int | None) -> str:
    """``7 (2h 5m of 48h)``: the list's age at send time and the limit it was checked against (entries
    recorded before the limit was kept show the age alone), or why there is none: an unfiltered
    disclosure used no list."""
    if version_id is None or age_seconds is None:
        return "none (not filtered)"
    limit = f" of {config.format_duration(timedelta(seconds=max_age_seconds))}" if max_age_seconds else ""
    return f"{version_id} ({escape(config.format_duration(timedelta(seconds=age_seconds)) + limit)})"
