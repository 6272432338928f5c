"""`optout check ...`: build the request for the national service, import its reply, approve or reject.

Only NHS England holds opt-outs: these commands record what was asked and what came back, nothing else.
"""

from __future__ import annotations

import getpass
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from optout.cli import progress
from optout.cli.output import echo_counts, version_line
from optout.errors import InputError

app = typer.Typer(help="Check NHS numbers with the national opt-out service.", no_args_is_help=True)


@app.command("request")
def request(
    inputs: Annotated[list[Path], typer.Argument(help="CSV or Parquet files holding the cohort.")],
    id_column: Annotated[str, typer.Option("--id-column", help="Column with the NHS numbers.")],
    out: Annotated[Path, typer.Option("--out", help="Request file to write (.dat).")],
) -> None:
    """Build the request file from every valid, distinct NHS number in INPUT and record it as pending."""
    from optout.cohort import read_cohort
    from optout.ndop import write_request
    from optout.store import Store

    with progress.shown():
        cohort = read_cohort(inputs, id_column)
    if not len(cohort.numbers):
        raise InputError("no valid NHS number to send", path=inputs[0], field=id_column)
    info = Store().record_request(cohort.numbers, source=", ".join(str(p) for p in inputs))
    write_request(out, cohort.numbers)
    typer.echo(f"request written: {out}")
    typer.echo(version_line(info))
    echo_counts("cohort", cohort.counts)
    typer.echo("records without a usable NHS number cannot be cleared by the check: filters remove them")


@app.command("import")
def import_(
    request_file: Annotated[Path, typer.Argument(help="The request file sent (.dat).")],
    reply_file: Annotated[Path, typer.Argument(help="The national service's reply file.")],
    checked_at: Annotated[
        datetime | None, typer.Option("--checked-at", help="When the service checked (ISO-8601); default now.")
    ] = None,
) -> None:
    """Import the reply to a recorded request; it becomes the current version when it passes the gates.

    The quarantine thresholds are settings (OPTOUT_QUARANTINE_Z, _FLOOR, _MAX_SHARE; see docs/mesh.md).
    """
    from optout.ndop import parse_reply, read_request
    from optout.store import Store

    requested = read_request(request_file)
    store = Store()
    digest = hashlib.sha256(request_file.read_bytes()).hexdigest()
    pending = store.find_request(request_sha256=digest)
    if pending is None:
        raise InputError("this request was not recorded here; build it with `optout check request`", path=request_file)
    cleared = parse_reply(reply_file, requested, name=str(reply_file))
    when = _utc(checked_at) if checked_at else datetime.now(UTC)
    info = store.import_reply(pending.id, cleared, checked_at=when)
    typer.echo(version_line(info))


_BY = typer.Option("--by", help="Who decided (recorded in the ledger); default the login name.")


@app.command("approve")
def approve(
    version: Annotated[int, typer.Argument(help="A quarantined version.")], by: Annotated[str | None, _BY] = None
) -> None:
    """Publish a quarantined reply after a governance officer has inspected it."""
    from optout.governance.decisions import record_decision
    from optout.store import Store

    typer.echo(version_line(Store().approve(version)))
    record_decision(version, "approved", by or getpass.getuser())


@app.command("reject")
def reject(
    version: Annotated[int, typer.Argument(help="A quarantined version.")], by: Annotated[str | None, _BY] = None
) -> None:
    """Discard a quarantined reply; the current version stays as it is."""
    from optout.governance.decisions import record_decision
    from optout.store import Store

    typer.echo(version_line(Store().reject(version)))
    record_decision(version, "rejected", by or getpass.getuser())


@app.command("versions")
def versions(limit: Annotated[int, typer.Option(help="How many, newest first.")] = 10) -> None:
    """List recent versions with their counts."""
    from optout.store import Store

    for info in Store().versions(limit=limit):
        typer.echo(version_line(info))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
