"""`optout check ...`: build the request for the national service, import its reply, approve or reject."""

from __future__ import annotations

import typer

app = typer.Typer(help="Check NHS numbers with the national opt-out service.", no_args_is_help=True)
