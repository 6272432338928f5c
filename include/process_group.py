"""Run a command as a process group that Ctrl-C and SIGTERM stop whole (``make airflow``).

``airflow standalone`` starts the scheduler, DAG processor, triggerer, API server and task processes;
stopping only its leader leaves them running, so the whole group is signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading

STOP_SECONDS = 30


def run_group(command: list[str], env: dict[str, str]) -> int:
    """Run ``command`` in a new process group; on Ctrl-C or SIGTERM stop the whole group, not just its leader.

    The group gets SIGTERM, and SIGKILL after ``STOP_SECONDS`` if its leader has not exited; whatever is
    left of the group when the leader exits (a task process that outlived it) is killed too.
    """
    child = subprocess.Popen(command, env=env, start_new_session=True)
    received: list[int] = []

    def kill(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)

    def stop(signum: int, _frame: object) -> None:
        if not received:
            print(f"\nstopping Airflow (signal {signum}) ...", file=sys.stderr, flush=True)
            timer = threading.Timer(STOP_SECONDS, kill, (signal.SIGKILL,))
            timer.daemon = True  # the runner exits as soon as the group has gone
            timer.start()
        received.append(signum)
        kill(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = child.wait()
    kill(signal.SIGKILL)
    return 128 + received[0] if received else code
