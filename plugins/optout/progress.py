"""Progress of long work (filter, proof, refresh): rows, bytes, rate and, where the total is known, ETA.

The library's loops call :func:`advance` once per batch; it costs a context-variable read when nobody
watches. Whoever runs the work and wants to see it installs a :class:`Reporter` with :func:`reporting`:
the Airflow operators log a line at a steady interval (every 10 s, never per batch), the CLI draws a bar
on a terminal (see ``optout.cli.progress``). Counts only: a snapshot holds no value from the data.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

LOG_INTERVAL = 10.0  # seconds between two progress lines in a task log


@dataclass(frozen=True)
class Snapshot:
    """Where one piece of work stands."""

    what: str
    rows: int
    nbytes: int
    seconds: float
    total_rows: int | None = None
    done: bool = False

    @property
    def rate(self) -> float:
        """Rows per second so far."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far; None when the total is not known (or nothing is done yet)."""
        if self.total_rows is None or self.rate <= 0:
            return None
        return max(self.total_rows - self.rows, 0) / self.rate

    def line(self) -> str:
        """One log line: ``filter: 1,200,000 of 3,000,000 rows (40%), 96.0 MB, 150,000 rows/s, ETA 12s``."""
        of = ""
        if self.total_rows:
            of = f" of {self.total_rows:,} ({100 * self.rows / self.total_rows:.0f}%)"
        eta = "" if self.eta is None or self.done else f", ETA {_duration(self.eta)}"
        state = " done in " + _duration(self.seconds) if self.done else ""
        return f"{self.what}: {self.rows:,}{of} rows, {self.nbytes / 1e6:.1f} MB, {self.rate:,.0f} rows/s{eta}{state}"


Emit = Callable[[Snapshot], None]


class Reporter:
    """Adds up rows and bytes and hands a :class:`Snapshot` to ``emit`` at most every ``interval`` seconds
    (and once at the end, when the work took at least one interval)."""

    def __init__(self, emit: Emit, *, interval: float = LOG_INTERVAL, clock: Callable[[], float] = time.monotonic):
        self._emit = emit
        self._interval = interval
        self._clock = clock
        self._what = ""
        self._rows = self._bytes = 0
        self._total: int | None = None
        self._start = self._last = clock()

    def start(self, what: str, total_rows: int | None = None) -> None:
        """A new stage (``"filter patients"``, ``"proof"``): counts start again from zero."""
        self._what, self._total = what, total_rows
        self._rows = self._bytes = 0
        self._start = self._last = self._clock()

    def advance(self, rows: int, nbytes: int = 0) -> None:
        self._rows += rows
        self._bytes += nbytes
        now = self._clock()
        if now - self._last >= self._interval:
            self._last = now
            self._emit(self._snapshot(now))

    def finish(self) -> None:
        now = self._clock()
        if now - self._start >= self._interval:
            self._emit(self._snapshot(now, done=True))

    def _snapshot(self, now: float, *, done: bool = False) -> Snapshot:
        return Snapshot(self._what, self._rows, self._bytes, now - self._start, self._total, done)


_current: ContextVar[Reporter | None] = ContextVar("optout_progress", default=None)


@contextlib.contextmanager
def reporting(reporter: Reporter | None) -> Iterator[Reporter | None]:
    """Send the progress of the work done inside to ``reporter`` (None: nobody watches)."""
    token = _current.set(reporter)
    try:
        yield reporter
    finally:
        _current.reset(token)


@contextlib.contextmanager
def stage(what: str, total_rows: int | None = None) -> Iterator[None]:
    """Mark one stage of work (the library calls this around a loop)."""
    reporter = _current.get()
    if reporter is not None:
        reporter.start(what, total_rows)
    yield
    if reporter is not None:
        reporter.finish()


def advance(rows: int, nbytes: int = 0) -> None:
    """Count a batch done (cheap when nobody watches)."""
    reporter = _current.get()
    if reporter is not None:
        reporter.advance(rows, nbytes)


def to_log(logger: Any, interval: float = LOG_INTERVAL) -> Reporter:
    """A reporter that writes one line to ``logger`` every ``interval`` seconds (task logs)."""
    return Reporter(lambda snapshot: logger.info("%s", snapshot.line()), interval=interval)


def _duration(elapsed: float) -> str:
    seconds = round(elapsed)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
