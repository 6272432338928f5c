"""Shared by the benchmarks: run one contender in a child process, read its result and peak memory."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def add_extract_arguments(parser: argparse.ArgumentParser) -> None:
    """The generated extract's shape and where it lives: the options the file benchmarks share."""
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--people", type=int, help="default: half the rows")
    parser.add_argument("--opted-out", type=float, default=0.05)
    parser.add_argument("--dir", type=Path, help="work folder (default: a temporary one)")


def run_child(command: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``command``, which prints one JSON line last (see :func:`report`), and return that result."""
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{command[-1]} failed (exit {done.returncode})")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(command: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Like :func:`run_child`, adding ``peak_mib``: the child's max RSS, from the kernel's accounting, unless
    the child reported its own (:func:`own_peak_mib`, taken before checks of the harness's own)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{command[-1]} failed (exit {os.waitstatus_to_exitcode(status)})")
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    result.setdefault("peak_mib", usage.ru_maxrss / 1024)
    return result


def report(result: dict[str, float]) -> None:
    """Print a child's result with its own peak RSS."""
    print(json.dumps({**result, "peak_rss_mib": own_peak_mib()}))


def own_peak_mib() -> float:
    """This process's peak RSS so far (VmHWM: since exec, so a big parent is not counted)."""
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024


def check_result(folder: Path, *, lookups: bool) -> object:
    """The saved cohort and cleared set as the store would load them; with ``lookups`` the bitmap sets
    the file engine uses are built here too (the store builds them once per version: not timed)."""
    from optout.store import CheckResult

    check = CheckResult(None, np.load(folder / "cohort.npy"), np.load(folder / "cleared.npy"))  # type: ignore[arg-type]
    if lookups:
        _ = check.cleared_set, check.cohort_set
    return check


def take_turns(names: Sequence[T], measure_one: Callable[[T], dict[str, Any]], repeat: int) -> dict[T, dict[str, Any]]:
    """Run every contender ``repeat`` times, taking turns (a noisy spell on a shared machine hits them all
    alike); each one's best run by ``seconds``, with ``peak_mib`` the highest of its runs and ``runs`` all its
    times."""
    runs: dict[T, list[dict[str, Any]]] = {name: [] for name in names}
    for _ in range(repeat):
        for name in names:
            runs[name].append(measure_one(name))
    best = {}
    for name, done in runs.items():
        best[name] = {
            **min(done, key=lambda run: run["seconds"]),
            "peak_mib": max(run["peak_mib"] for run in done),
            "runs": [run["seconds"] for run in done],
        }
    return best
