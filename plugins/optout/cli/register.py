"""`optout register`: the data uses register for publication, small numbers suppressed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from optout.cli.flows import declared_or_warn
from optout.cli.report import day_range
from optout.errors import InputError


def register(app: typer.Typer) -> None:
    app.command("register")(register_)


def register_(
    since: Annotated[str, typer.Option("--since", help="First day, YYYY-MM-DD.")],
    out: Annotated[Path, typer.Option("--out", help="FILE.csv or FILE.html.")],
    until: Annotated[str | None, typer.Option("--until", help="Last day, YYYY-MM-DD; default today.")] = None,
) -> None:
    """One row per flow: recipient, purpose, basis, period, disclosures, records sent; counts 1-7 as <8, the
    rest rounded to the nearest 5."""
    from optout.atomic import write_bytes
    from optout.governance import settings, uses_register
    from optout.governance.flows import build_register
    from optout.ledger import Ledger

    start, end = day_range(since, until)
    kind = out.suffix.lower()
    if kind not in (".csv", ".html"):
        raise InputError("must end in .csv or .html", field="--out")
    ledger = Ledger()
    try:
        entries = [e for e in ledger.entries(start) if e.recorded_at < end]
    finally:
        ledger.dispose()
    rows = uses_register.uses(entries, build_register(declared_or_warn(), entries=entries))
    period = f"{start:%d %b %Y} to {end - timedelta(days=1):%d %b %Y}"
    text = (
        uses_register.to_csv(rows)
        if kind == ".csv"
        else uses_register.to_html(rows, organisation=settings.organisation(), period=period)
    )
    write_bytes(out, text.encode())
    typer.echo(f"data uses register written to {out}: {len(rows)} flow(s), small numbers suppressed")
