"""The ``optout`` command line. Exit codes: 0 done, 1 refused by policy, 2 bad input or usage.

Every command reports counts only; none prints an NHS number.
"""

from __future__ import annotations

import typer

from optout.cli import approvals, check, extract, flows, ledger, register, report, retention, sandbox, settings, spec
from optout.errors import OptOutError

app = typer.Typer(
    name="optout",
    help="Apply England's National Data Opt-out: check NHS numbers, filter extracts, prove and record.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(approvals.app, name="approvals")
app.add_typer(check.app, name="check")
app.add_typer(flows.app, name="flows")
app.add_typer(ledger.app, name="ledger")
app.add_typer(retention.app, name="retention")
app.add_typer(sandbox.app, name="sandbox")
app.add_typer(settings.app, name="settings")
app.add_typer(spec.app, name="spec")
extract.register(app)
report.register(app)
register.register(app)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app and turn library errors into exit codes and one line."""
    try:
        result = app(args=argv, prog_name="optout", standalone_mode=False)
    except OptOutError as exc:
        typer.echo(f"optout: {exc}", err=True)
        return exc.exit_code
    except typer.TyperException as exc:  # usage errors: Typer's own click raises these
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return 2
    except Exception as exc:
        if not type(exc).__module__.startswith("sqlalchemy"):
            raise
        # A database error's text can quote SQL and its parameters: name its kind only.
        orig = getattr(exc, "orig", None)
        kind = type(orig).__name__ if orig is not None else type(exc).__name__
        typer.echo(
            f"optout: the database could not be used ({kind}): check the URL and that it is a database", err=True
        )
        return 2
    return result if isinstance(result, int) else 0
