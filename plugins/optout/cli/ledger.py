"""`optout ledger ...`: prove the disclosure ledger is intact and hand it to the governance team."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from optout.errors import InputError, VerificationFailed

app = typer.Typer(help="The disclosure ledger: one hash-chained entry per gated export.", no_args_is_help=True)


class ExportFormat(StrEnum):
    csv = "csv"


@app.command("verify")
def verify() -> None:
    """Recompute the hash chain; exit 1 naming the first entry that was changed or removed."""
    from optout.ledger import Ledger

    ok, bad_id, message = Ledger().verify()
    if not ok:
        raise VerificationFailed(f"ledger tampered at entry {bad_id}: {message}")
    typer.echo(f"ledger intact: {message}")


@app.command("export")
def export(
    since: Annotated[
        str | None, typer.Option("--since", help="First day (YYYY-MM-DD, UTC) or ISO-8601 time; default all.")
    ] = None,
    format_: Annotated[ExportFormat, typer.Option("--format", help="Output format.")] = ExportFormat.csv,
    out: Annotated[Path | None, typer.Option("--out", help="File to write; default standard output.")] = None,
) -> None:
    """Write the ledger's entries (oldest first) for the governance team."""
    from optout.atomic import atomic_file
    from optout.ledger import Ledger

    start = _parse_since(since) if since else None
    ledger = Ledger()
    if out is None:
        count = ledger.export_csv(start, sys.stdout)
    else:
        with atomic_file(out, "w") as handle:
            count = ledger.export_csv(start, handle)  # type: ignore[arg-type]
    typer.echo(f"{count} ledger entries exported as {format_.value}", err=True)


def _parse_since(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{text!r} is not a date; write YYYY-MM-DD", field="--since") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
