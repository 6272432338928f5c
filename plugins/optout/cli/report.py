"""`optout report`: the evidence pack for the annual review and the DSPT return (PDF or HTML)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Annotated

import typer

from optout.cli.flows import declared_or_warn
from optout.cli.output import parse_day
from optout.errors import InputError


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    since: Annotated[str, typer.Option("--since", help="First day, YYYY-MM-DD.")],
    out: Annotated[Path, typer.Option("--out", help="FILE.pdf or FILE.html.")],
    until: Annotated[str | None, typer.Option("--until", help="Last day, YYYY-MM-DD; default today.")] = None,
) -> None:
    """Write the evidence pack: refreshes and freshness, disclosures, exemptions, quarantine, ledger integrity."""
    from optout.atomic import write_bytes
    from optout.governance import evidence, settings

    start, end = day_range(since, until)
    kind = out.suffix.lower()
    if kind not in (".pdf", ".html"):
        raise InputError("must end in .pdf or .html", field="--out")
    facts = evidence.read_facts(start, end, declared=declared_or_warn(), blocked=refused_or_warn(start, end))
    document = evidence.build(facts, settings.organisation())
    if kind == ".pdf":
        from optout.governance.pack_pdf import render_pdf

        write_bytes(out, render_pdf(document))
    else:
        from optout.governance.pack_html import render_html

        write_bytes(out, render_html(document).encode())
    typer.echo(f"evidence pack for {document.period} written to {out}: {len(facts.entries)} disclosure(s)")


def day_range(since: str, until: str | None) -> tuple[datetime, datetime]:
    """``--since``/``--until`` as UTC midnights, the last day included."""
    first = parse_day(since, "--since")
    last = parse_day(until, "--until") if until else datetime.now(UTC).date()
    if last < first:
        raise InputError("is before --since", field="--until")
    return (
        datetime.combine(first, time(), UTC),
        datetime.combine(last + timedelta(days=1), time(), UTC),
    )


def refused_or_warn(since: datetime, until: datetime) -> list[datetime]:
    """When gated exports failed, from Airflow's task history; without it, say so."""
    try:
        from optout.airflow.flows import refused_exports

        return refused_exports(since, until)
    except Exception as exc:
        typer.echo(
            f"optout: Airflow's task history could not be read ({type(exc).__name__}); refused exports are not counted",
            err=True,
        )
        return []
