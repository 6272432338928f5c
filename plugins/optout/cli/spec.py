"""`optout spec check SPEC`: what a spec leaves out (undeclared number columns, unlinked tables), without
filtering. Exit 0: nothing found; 1: something needs attention; 2: bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Check an extract spec against its tables.", no_args_is_help=True)


@app.command("check")
def check(
    spec_path: Annotated[Path, typer.Argument(help="The extract spec (YAML).", metavar="SPEC")],
    rows: Annotated[
        int | None, typer.Option("--rows", min=1, help="Read at most this many rows of each table (default: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document for machines.")] = False,
) -> None:
    """Count, per column, the values that read as valid NHS numbers; name undeclared ones, tables that declare
    only a person key and tables with no link to the cohort. Counts and column names only, never a value."""
    from optout.spec import load_spec
    from optout.spec_check import check_spec

    found = check_spec(load_spec(spec_path), rows=rows)
    if as_json:
        typer.echo(json.dumps(found.to_dict(), indent=2, sort_keys=True))
    else:
        for table in found.tables:
            for line in table.lines():
                typer.echo(line)
        typer.echo("needs attention" if found.needs_attention else "nothing found")
    if found.needs_attention:
        raise typer.Exit(1)
