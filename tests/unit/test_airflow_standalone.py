"""`make airflow`: parallelism sized to the machine, and SIGTERM stops every process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

INCLUDE = Path(__file__).resolve().parents[2] / "include"
RUNNER = """
import sys
sys.path.insert(0, sys.argv[1])
from process_group import run_group
# a leader that starts a grandchild, as airflow standalone starts the scheduler and its task processes
leader = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"
sys.exit(run_group([sys.executable, "-c", leader], {"PATH": "/usr/bin:/bin"}))
"""


def _sleepers(session: int) -> list[int]:
    """Live processes of a session (a killed process may linger as a zombie until it is reaped)."""
    found = subprocess.run(["ps", "-eo", "pid=,sid=,stat="], capture_output=True, text=True, check=True).stdout
    rows = (line.split(None, 2) for line in found.splitlines())
    return [int(pid) for pid, sid, stat in rows if int(sid) == session and not stat.startswith("Z")]


def test_sigterm_stops_the_whole_group() -> None:
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(INCLUDE)])
    deadline = time.monotonic() + 60
    leader = None
    while time.monotonic() < deadline and leader is None:
        children = subprocess.run(["pgrep", "-P", str(runner.pid)], capture_output=True, text=True).stdout.split()
        if children and len(_sleepers(int(children[0]))) >= 2:
            leader = int(children[0])
        time.sleep(0.2)
    assert leader is not None, "the group did not start"
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(60) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 5
    while _sleepers(leader) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sleepers(leader) == []


def test_parallelism_follows_the_cores(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(INCLUDE))
    monkeypatch.delenv("AIRFLOW__CORE__PARALLELISM", raising=False)
    from airflow_standalone import standalone_environment

    env = standalone_environment()
    assert env["AIRFLOW__CORE__PARALLELISM"] == str(max(2, os.cpu_count() or 2))
