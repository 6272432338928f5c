"""`optout settings ...`: the settings that protect people, changed only by a recorded command.

Each change is an event in the hash-chained ledger (who, when, the old and new value). The environment
and DAG code may only tighten them; see :mod:`optout.freshness`.
"""

from __future__ import annotations

import getpass
from enum import StrEnum
from typing import Annotated

import typer

app = typer.Typer(help="Settings that only a recorded command changes (kept in the ledger).", no_args_is_help=True)


class Setting(StrEnum):
    max_age = "max-age"


@app.command("set")
def set_(
    name: Annotated[Setting, typer.Argument(help="The setting: max-age (how old a list may be, e.g. 48h).")],
    value: Annotated[str, typer.Argument(help="The new value, such as 48h or 3d.")],
    by: Annotated[str | None, typer.Option("--by", help="Who changes it (default: the login name).")] = None,
) -> None:
    """Change a setting; the change is recorded in the ledger with who and when."""
    from optout.config import format_duration, parse_duration
    from optout.freshness import set_max_age

    entry = set_max_age(value, changed_by=by or getpass.getuser())
    typer.echo(f"max-age set to {format_duration(parse_duration(value, field='max-age'))} (ledger entry {entry})")


@app.command("show")
def show() -> None:
    """The settings in force, and the last recorded change of each."""
    from optout.config import format_duration
    from optout.freshness import MAX_AGE, SETTING, max_age, recorded_max_age
    from optout.ledger import Ledger

    changes = [e for e in Ledger().events(kind=SETTING) if e.event.subject == MAX_AGE]
    line = f"max-age {format_duration(max_age())} (store: {format_duration(recorded_max_age())}"
    if changes:
        last = changes[-1]
        line += f", set {last.recorded_at:%Y-%m-%d %H:%M} UTC by {last.event.detail.get('changed_by')}"
    typer.echo(line + "; OPTOUT_MAX_AGE may only shorten it)")
