"""A progress bar for the CLI's long commands, on a terminal only: piped or redirected, it stays quiet.

The library reports through :mod:`optout.progress`; this draws what it reports with Rich (pulled in by
Typer), imported only when a terminal is there to see it. Counts only, like every other output.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from optout import progress

REFRESH = 0.2  # seconds between two updates of the bar


@contextlib.contextmanager
def shown(stream: Any = None) -> Iterator[None]:
    """Draw a bar on ``stream`` (default stderr) while the work inside runs, if it is a terminal."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} rows"),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=Console(file=stream),
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def draw(snapshot: progress.Snapshot) -> None:
            if snapshot.what not in tasks:
                tasks[snapshot.what] = bar.add_task(snapshot.what, total=snapshot.total_rows, rate="")
            bar.update(
                tasks[snapshot.what],
                completed=snapshot.rows,
                total=snapshot.total_rows,
                rate=f"{snapshot.rate:,.0f} rows/s",
            )

        with progress.reporting(progress.Reporter(draw, interval=REFRESH)):
            yield
