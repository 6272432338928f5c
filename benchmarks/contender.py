"""Shared by the SQL and pseudonym benchmarks: run one contender in a child process, read its result."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np


def run_child(command: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``command`` (which prints one JSON line last); add the child's own peak RSS in MiB."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{command[-1]} failed (status {status})")
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    return result


def check_result(folder: Path) -> object:
    """The saved cohort and cleared set as the store would load them, lookups built (not timed)."""
    from optout.store import CheckResult

    check = CheckResult(None, np.load(folder / "cohort.npy"), np.load(folder / "cleared.npy"))  # type: ignore[arg-type]
    _ = check.cleared_set, check.cohort_set
    return check
