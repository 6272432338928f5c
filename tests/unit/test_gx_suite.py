"""The GX suite's worker process: real GX in a real child process, fed counts only, failing closed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from optout import gx_suite
from optout.errors import VerificationFailed

pytestmark = pytest.mark.slow


def counts(**changed: Any) -> list[dict[str, Any]]:
    """One table's row of the proof's counts frame, all clean unless ``changed``."""
    row: dict[str, Any] = {"table": "events", "rows": 12, "hash_ok": True, "version_matches": True}
    row |= {"list_fresh_at_filter": True, "list_is_current": True}
    zero = ("uncleared_number_rows", "removed_person_rows", "rows_mismatch", "leaked_values", "unscannable_columns")
    row |= dict.fromkeys((*zero, "schema_changed", "unexpected_files", "tables_mismatch"), 0)
    return [row | changed]


def run(rows: list[dict[str, Any]], folder: Path) -> dict[str, bool]:
    return gx_suite.run(rows, folder / "gx", folder / "docs", folder / "checkpoint_result.json")


def test_the_suite_runs_in_a_process_of_its_own_and_says_which_check_failed(tmp_path: Path) -> None:
    gx_suite.start()
    worker = gx_suite._worker
    assert worker is not None and worker.process.pid != os.getpid()
    assert run(counts(), tmp_path / "clean") == dict.fromkeys(gx_suite.CHECKS, True)
    assert (tmp_path / "clean" / "docs" / "index.html").is_file()
    result = json.loads((tmp_path / "clean" / "checkpoint_result.json").read_text())
    assert result["success"] is True
    outcome = run(counts(leaked_values=3, list_is_current=False), tmp_path / "dirty")
    assert outcome == {**dict.fromkeys(gx_suite.CHECKS, True), "no_uncleared_number": False} | {
        "list_fresh_and_current": False
    }
    assert gx_suite._worker is worker  # kept: GX is imported once per process


def test_a_suite_process_that_fails_fails_closed_and_the_next_run_starts_another(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    with pytest.raises(VerificationFailed, match="suite's process failed"):
        run(counts(), tmp_path / "a_file")  # GX cannot make its project under a file: the worker dies
    assert gx_suite._worker is None
    assert run(counts(), tmp_path / "after") == dict.fromkeys(gx_suite.CHECKS, True)


def test_a_worker_that_died_while_idle_is_replaced(tmp_path: Path) -> None:
    gx_suite.start()
    worker = gx_suite._worker
    assert worker is not None
    worker.process.kill()
    worker.process.wait()
    assert run(counts(), tmp_path) == dict.fromkeys(gx_suite.CHECKS, True)
    assert gx_suite._worker is not worker
