"""Progress of long work: a line at a steady interval (never per batch), ETA only where the total is known,
a bar on a terminal and nothing when piped; counts only."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from optout import progress
from optout.cli import progress as cli_progress
from optout.cohort import read_cohort


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_line_every_interval_not_every_batch() -> None:
    clock, seen = Clock(), []
    reporter = progress.Reporter(seen.append, interval=10.0, clock=clock)
    with progress.reporting(reporter), progress.stage("filter patients", total_rows=1000):
        for _ in range(100):  # 100 batches over 25 seconds: two lines, then the last one
            clock.now += 0.25
            progress.advance(10, 80)
    assert [s.rows for s in seen] == [400, 800, 1000]
    assert seen[-1].done and not seen[0].done
    first = seen[0]
    assert first.rate == pytest.approx(40.0) and first.eta == pytest.approx(15.0)
    assert first.line() == "filter patients: 400 of 1,000 (40%) rows, 0.0 MB, 40 rows/s, ETA 15s"
    assert seen[-1].line().endswith("done in 25s")


def test_no_eta_without_a_total_and_nothing_for_short_work() -> None:
    clock, seen = Clock(), []
    with progress.reporting(progress.Reporter(seen.append, interval=10.0, clock=clock)):
        with progress.stage("cohort a.csv"):
            clock.now = 11.0
            progress.advance(5)
        with progress.stage("cohort b.csv"):  # under one interval: silent
            progress.advance(5)
    assert [s.eta for s in seen] == [None, None]
    assert "ETA" not in seen[0].line()


def test_advance_without_a_reporter_does_nothing() -> None:
    progress.advance(10)  # nobody watches: no error, no output


def test_to_log_writes_counts_to_the_task_log(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("optout.test.progress")
    reporter = progress.to_log(logger, interval=0.0)
    with (
        caplog.at_level(logging.INFO, logger=logger.name),
        progress.reporting(reporter),
        progress.stage("proof x", total_rows=10),
    ):
        progress.advance(4)
    assert "proof x: 4 of 10 (40%) rows" in caplog.text


def _cohort(tmp_path: Path) -> Path:
    from tests.unit.filter_data import valid_numbers

    path = tmp_path / "cohort.csv"
    path.write_text("nhs_number\n" + "\n".join(str(n) for n in valid_numbers(50)) + "\n")
    return path


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_cli_bar_on_a_terminal_and_quiet_when_piped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_progress, "REFRESH", 0.0)
    path = _cohort(tmp_path)
    piped = io.StringIO()
    with cli_progress.shown(piped):
        read_cohort(path, "nhs_number")
    assert piped.getvalue() == ""
    terminal = Terminal()
    with cli_progress.shown(terminal):
        read_cohort(path, "nhs_number")
    drawn = terminal.getvalue()
    assert "cohort cohort.csv" in drawn and "50 rows" in drawn


def test_the_filter_and_the_proof_report_their_rows(tmp_path: Path) -> None:
    from optout.filter import run_filter
    from optout.spec import load_spec
    from optout.validation import run_validation
    from tests.unit.filter_data import check_result, write_extract

    spec = load_spec(write_extract(tmp_path / "in"))
    used = check_result()
    seen: list[progress.Snapshot] = []
    with progress.reporting(progress.Reporter(seen.append, interval=0.0)):
        manifest = run_filter(spec, tmp_path / "out", used)
        run_validation(spec, tmp_path / "out", used, current=used.info)
    filtered = {s.what: s.rows for s in seen if s.what.startswith("filter ")}
    assert filtered == {f"filter {t.name}": t.rows_in for t in manifest.tables}
    proof = [s for s in seen if s.what.startswith("proof ")]
    assert proof and proof[-1].total_rows == manifest.rows_out and proof[-1].rows == manifest.rows_out
    assert all(str(n) not in s.line() for s in seen for n in used.cohort)
