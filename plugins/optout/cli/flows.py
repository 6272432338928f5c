"""`optout flows ...`: the register of flows (what the DAGs declare, what governance staff recorded)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from optout.cli.output import parse_day

if TYPE_CHECKING:
    from optout.governance.flows import DeclaredFlow

app = typer.Typer(
    help="The register of flows: DSA, DPIA, approver and review date of every export.", no_args_is_help=True
)


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Every flow the DAGs declare or the ledger saw, with its paperwork and review state."""
    from optout.governance.flows import build_register

    flows = build_register(declared_or_warn())
    if as_json:
        typer.echo(json.dumps([flow.as_json() for flow in flows], indent=2))
        return
    if not flows:
        typer.echo("no flows: no DAG declares a gated export and the ledger is empty")
    for flow in flows:
        review = flow.review
        paperwork = (
            f"DSA {review.dsa}, DPIA {review.dpia}, approved by {review.approved_by}, review {review.review_date}"
            if review
            else "no review recorded"
        )
        basis = f" ({flow.legal_basis})" if flow.legal_basis else ""
        typer.echo(
            f"{flow.flow}: {flow.status().upper()}; {flow.purpose}{basis} to {flow.recipient}; {paperwork}; "
            f"{flow.disclosures} disclosure(s)"
        )


@app.command("set")
def set_(
    flow: Annotated[str, typer.Argument(help="The flow, DAG_ID/TASK_ID (see `optout flows list`).")],
    dsa: Annotated[str, typer.Option("--dsa", help="Reference of the data sharing agreement.")],
    dpia: Annotated[str, typer.Option("--dpia", help="Reference of the data protection impact assessment.")],
    approved_by: Annotated[str, typer.Option("--approved-by", help="Who approved the flow.")],
    review: Annotated[str, typer.Option("--review", help="Next review date, YYYY-MM-DD.")],
) -> None:
    """Record a flow's DSA, DPIA, approver and next review date (earlier records are kept as history)."""
    from optout.governance.flows import FlowRegister

    review_date = parse_day(review, "--review")
    register = FlowRegister()
    try:
        recorded = register.record(flow, dsa=dsa, dpia=dpia, approved_by=approved_by, review_date=review_date)
    finally:
        register.dispose()
    typer.echo(f"flow {recorded.flow}: review recorded, next review {recorded.review_date}")


def declared_or_warn() -> list[DeclaredFlow]:
    """The DAGs' declared flows from Airflow's database; without it, say so and use the ledger alone."""
    try:
        from optout.airflow.flows import read_declared_flows

        return read_declared_flows()
    except Exception as exc:  # no Airflow database here: the register still shows what the ledger saw
        typer.echo(
            f"optout: Airflow's database could not be read ({type(exc).__name__}); flows no disclosure used yet "
            "are missing",
            err=True,
        )
        return []
