"""`optout retention run`: delete outputs, validation folders and old versions' numbers past their rules."""

from __future__ import annotations

import typer

app = typer.Typer(help="Retention of outputs, validation folders and old list versions.", no_args_is_help=True)


@app.command("run")
def run() -> None:
    """Delete what is past [optout] retain_outputs / retain_validation / retain_versions; one ledger entry each."""
    from optout.governance import retention

    rules = retention.Rules.from_settings()
    done = retention.run(rules)
    for deletion in done:
        typer.echo(
            f"deleted {deletion.what} {deletion.subject} ({deletion.age_days} days old), "
            f"ledger entry {deletion.entry_id}"
        )
    typer.echo(f"retention: {len(done)} deletion(s) recorded in the ledger")
