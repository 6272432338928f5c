"""`optout approvals ...`: the approvals governance staff record, which every exempt disclosure must cite."""

from __future__ import annotations

import getpass
import json
from typing import Annotated

import typer

from optout.cli.output import parse_day

app = typer.Typer(
    help="Approvals behind exemptions from the opt-out: an exempt extract's legal_reference names one.",
    no_args_is_help=True,
)


@app.command("add")
def add(
    reference: Annotated[str, typer.Argument(help="The approval's reference (the spec's legal_reference).")],
    basis: Annotated[str, typer.Option("--basis", help="The legal basis it approves (as in the spec).")],
    approved_by: Annotated[str, typer.Option("--approved-by", help="Who approved it.")],
    expires: Annotated[str, typer.Option("--expires", help="Last day it is valid, YYYY-MM-DD.")],
    note: Annotated[str | None, typer.Option("--note", help="Free text for reviewers (no patient data).")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who records it (default: the login name).")] = None,
) -> None:
    """Record (or renew) an approval; the change is also written to the ledger with who and when."""
    from optout.governance.approvals import ApprovalRegister

    register = ApprovalRegister()
    try:
        approval = register.add(
            reference,
            basis=basis,
            approved_by=approved_by,
            expires=parse_day(expires, "--expires"),
            note=note,
            recorded_by=by or getpass.getuser(),
        )
    finally:
        register.dispose()
    typer.echo(f"approval {approval.reference} recorded: {approval.legal_basis}, valid until {approval.expires}")


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Every approval with its basis, approver, expiry and state (valid, expired, revoked)."""
    from optout.governance.approvals import read_approvals

    approvals = read_approvals()
    if as_json:
        typer.echo(json.dumps([approval.as_json() for approval in approvals], indent=2))
        return
    if not approvals:
        typer.echo("no approvals recorded: every exempt export is refused until one is")
    for approval in approvals:
        typer.echo(
            f"{approval.reference}: {approval.state().upper()}; {approval.legal_basis}, approved by "
            f"{approval.approved_by}, expires {approval.expires}; recorded by {approval.recorded_by} "
            f"on {approval.recorded_at:%Y-%m-%d}"
        )


@app.command("revoke")
def revoke(
    reference: Annotated[str, typer.Argument(help="The approval's reference.")],
    by: Annotated[str | None, typer.Option("--by", help="Who revokes it (default: the login name).")] = None,
) -> None:
    """Revoke an approval: exports citing it are refused from now on (recorded in the ledger)."""
    from optout.governance.approvals import ApprovalRegister

    register = ApprovalRegister()
    try:
        revoked = register.revoke(reference, by=by or getpass.getuser())
    finally:
        register.dispose()
    typer.echo(f"approval {revoked.reference} revoked: exports citing it are refused")
