"""`optout sandbox ...`: a local mesh-sandbox server and a stand-in for the national service (demo, tests)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

URL_ENV = "OPTOUT_MESH_SANDBOX_URL"
app = typer.Typer(
    help="Run a local MESH (mesh-sandbox) and a stand-in for the national opt-out service. Never the real MESH.",
    no_args_is_help=True,
)


@app.command("up")
def up(
    port: Annotated[int | None, typer.Option(help="Loopback port; default a free one.")] = None,
) -> None:
    """Start mesh-sandbox in the background; print the connection for Airflow and the stand-in."""
    from optout.sandbox import server

    running = server.load_state()
    if running is not None and server.healthy(running.url):
        typer.echo(f"mesh-sandbox already running at {running.url} (pid {running.pid})")
        sandbox = running
    else:
        sandbox = server.start(port=port)
        server.save_state(sandbox)
        typer.echo(f"mesh-sandbox running at {sandbox.url} (pid {sandbox.pid}, log {sandbox.log_path})")
    typer.echo(f"export AIRFLOW_CONN_MESH_DEFAULT='{sandbox.airflow_connection()}'")


@app.command("down")
def down() -> None:
    """Stop the mesh-sandbox started by `optout sandbox up`."""
    from optout.sandbox import server

    sandbox = server.load_state()
    if sandbox is None:
        typer.echo("no mesh-sandbox recorded as running")
        return
    server.stop(sandbox)
    server.state_file().unlink(missing_ok=True)
    typer.echo(f"mesh-sandbox at {sandbox.url} stopped")


@app.command("env")
def env() -> None:
    """Print the `export AIRFLOW_CONN_MESH_DEFAULT=...` line for the running sandbox."""
    from optout.errors import InputError
    from optout.sandbox import server

    sandbox = server.load_state()
    if sandbox is None:
        raise InputError("no mesh-sandbox is running; start one with `optout sandbox up`")
    typer.echo(f"export AIRFLOW_CONN_MESH_DEFAULT='{sandbox.airflow_connection()}'")


@app.command("serve")
def serve(
    opt_outs: Annotated[Path, typer.Option("--opt-outs", help="NHS numbers to treat as opted out, one a line.")],
    delay: Annotated[float, typer.Option(help="Seconds between 'job created' and the reply.")] = 0.0,
    behaviour: Annotated[
        str,
        typer.Option(
            help=(
                "normal, crlf, malformed, unrequested, silent, rejected, non_delivery, late (replies held "
                "until Ctrl-C), duplicate, unknown_local_id or chunked."
            )
        ),
    ] = "normal",
    job_created: Annotated[bool, typer.Option(help="Send the JSON 'job created' message first.")] = True,
    count: Annotated[int | None, typer.Option(help="Exit after this many replies; default run until Ctrl-C.")] = None,
    url: Annotated[
        str | None,
        typer.Option(
            envvar=URL_ENV, help="mesh-sandbox to answer in (e.g. another container); default the one `up` started."
        ),
    ] = None,
) -> None:
    """Answer requests in the service mailbox of the running sandbox like the national service would."""
    from optout.errors import InputError
    from optout.sandbox import server
    from optout.sandbox.standin import Behaviour, StandIn, read_opt_outs

    sandbox = server.Sandbox(url=url, pid=0, log_path="") if url else server.load_state()
    if sandbox is None:
        raise InputError("no mesh-sandbox is running; start one with `optout sandbox up`")
    try:
        chosen = Behaviour(behaviour)
    except ValueError:
        raise InputError(f"unknown behaviour {behaviour!r}", field="--behaviour") from None
    stand_in = StandIn(
        sandbox.settings(mailbox=server.SERVICE_MAILBOX),
        read_opt_outs(opt_outs),
        behaviour=chosen,
        delay=delay,
        job_created=job_created,
    )
    typer.echo(f"stand-in answering in mailbox {server.SERVICE_MAILBOX} at {sandbox.url} ({chosen.value})")
    with contextlib.suppress(KeyboardInterrupt):
        stand_in.serve(until=count)
    typer.echo(f"stand-in answered {stand_in.answered} request(s)")
