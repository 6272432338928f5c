"""`optout filter`, `optout verify`, `optout status`: the extract side of the tool."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from optout.cli import progress
from optout.cli.output import version_line
from optout.errors import PolicyRefusal, VerificationFailed

if TYPE_CHECKING:
    from optout.store import CheckResult


def register(app: typer.Typer) -> None:
    """Add the top-level extract commands to the main app."""
    app.command("filter")(filter_)
    app.command("verify")(verify)
    app.command("status")(status)


def filter_(
    spec_path: Annotated[Path, typer.Option("--spec", help="The extract spec (YAML).")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Folder for the filtered extract and manifest.json.")],
    version: Annotated[int | None, typer.Option("--version", help="Refuse unless this is the current version.")] = None,
) -> None:
    """Remove every record of every person who may not be used; write the extract and its manifest."""
    from optout.filter import run_filter
    from optout.spec import load_spec

    spec = load_spec(spec_path)
    check_result = None
    if spec.filtered:
        check_result = _current_check(version)
    with progress.shown():
        manifest = run_filter(spec, out_dir, check_result)
    typer.echo(f"extract {spec.name!r} ({spec.purpose.value}) written to {out_dir}")
    for line in manifest.summary_lines():
        typer.echo(line)


def verify(
    spec_path: Annotated[Path, typer.Option("--spec", help="The extract spec (YAML).")],
    out_dir: Annotated[Path, typer.Option("--dir", help="Folder written by `optout filter`.")],
    data_docs: Annotated[
        Path | None, typer.Option("--data-docs", help="Where to build the Data Docs site; default beside the extract.")
    ] = None,
) -> None:
    """Prove the filtered extract with the Great Expectations suite: no uncleared number or person remains,
    counts and hashes hold, and the list used is still fresh and current."""
    from optout import gx_suite
    from optout.manifest import Manifest
    from optout.spec import load_spec

    spec = load_spec(spec_path)
    manifest = Manifest.read(out_dir)
    gx_suite.start()  # GX's import, the slowest part, begins in its own process before the store is read
    from optout.store import Store
    from optout.validation import run_validation

    check_result = Store().load(manifest.version_id) if manifest.version_id is not None else None
    with progress.shown():
        result = run_validation(spec, out_dir, check_result, data_docs_dir=data_docs)
    for check in result.checks:
        detail = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in check.detail.items())
        typer.echo(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {detail}")
    typer.echo(f"result: {result.result_path}")
    if result.data_docs_index is not None:
        typer.echo(f"data docs: {result.data_docs_index}")
    if not result.ok:
        raise VerificationFailed(f"the extract in {out_dir} did not verify; do not send it")
    typer.echo("verified")


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show the current version, its age, and whether it is fresh; exit 1 when stale or missing."""
    from optout.config import max_age
    from optout.store import Store

    store = Store()
    info = store.current()
    now = datetime.now(UTC)
    waiting = [v for v in store.versions(limit=50) if v.status in {"pending", "quarantined"}]
    fresh = info is not None and info.is_fresh(max_age(), now)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "version": info.id if info else None,
                    "checked_at": info.checked_at.isoformat() if info and info.checked_at else None,
                    "age_seconds": int(info.age(now).total_seconds()) if info else None,
                    "max_age_seconds": int(max_age().total_seconds()),
                    "fresh": fresh,
                    "cohort": info.cohort_count if info else None,
                    "cleared": info.cleared_count if info else None,
                    "pending": sum(v.status == "pending" for v in waiting),
                    "quarantined": sum(v.status == "quarantined" for v in waiting),
                }
            )
        )
    elif info is None:
        typer.echo("no opt-out list yet: run the refresh (or `optout check request` then `optout check import`)")
    else:
        typer.echo(version_line(info, now))
        for other in waiting:
            typer.echo(f"  waiting: {version_line(other, now)}")
    if not fresh:
        raise typer.Exit(1)


def _current_check(version: int | None) -> CheckResult:
    """The current version's numbers, refusing a missing or stale list (fail closed)."""
    from optout.store import Store

    store = Store()
    info = store.require_current()
    if version is not None and version != info.id:
        raise PolicyRefusal(
            f"version {version} is not the current one (current: {info.id}); the latest answer must be used"
        )
    return store.load(info.id)
