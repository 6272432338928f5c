"""Start and stop a real ``mesh-sandbox`` server in its own virtualenv, on a free loopback port.

mesh-sandbox pins a FastAPI that Airflow refuses, so it runs from ``.venv-mesh-sandbox`` (created by
``make install`` from ``requirements-mesh-sandbox.txt``) as a separate process:
``python -m uvicorn mesh_sandbox.api:app`` with ``STORE_MODE=memory`` (nothing on disk, nothing left
behind) and ``AUTH_MODE=full`` (the real MESH token check, with our shared key). Its canned mailboxes
are used as they ship: ``X26ABC1`` is ours, ``X26ABC2`` plays the national service, password
``password`` for both.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from optout import config
from optout.errors import InputError
from optout.mesh_transport import MeshSettings

OUR_MAILBOX = "X26ABC1"
SERVICE_MAILBOX = "X26ABC2"
PASSWORD = "password"
SHARED_KEY = "optout-sandbox-key"
VENV_ENV = "OPTOUT_MESH_SANDBOX_VENV"
_REPO = Path(__file__).resolve().parents[3]
_STARTUP_SECONDS = 30.0


@dataclass(frozen=True)
class Sandbox:
    """A running mesh-sandbox: where it listens and the process to stop."""

    url: str
    pid: int
    log_path: str

    def settings(
        self, *, mailbox: str = OUR_MAILBOX, password: str = PASSWORD, shared_key: str = SHARED_KEY
    ) -> MeshSettings:
        """Connection settings for one of the sandbox's mailboxes (ours by default)."""
        peer = SERVICE_MAILBOX if mailbox == OUR_MAILBOX else OUR_MAILBOX
        return MeshSettings(self.url, mailbox, password, service_mailbox=peer, shared_key=shared_key)

    def airflow_connection(self) -> str:
        """The value for ``AIRFLOW_CONN_MESH_DEFAULT``: a JSON connection pointing at this sandbox."""
        return json.dumps(
            {
                "conn_type": "mesh",
                "host": self.url,
                "login": OUR_MAILBOX,
                "password": PASSWORD,
                "extra": {"shared_secret": SHARED_KEY, "service_mailbox": SERVICE_MAILBOX},
            }
        )


def venv_dir() -> Path:
    """``OPTOUT_MESH_SANDBOX_VENV``, else ``.venv-mesh-sandbox`` at the repository root."""
    return Path(os.environ.get(VENV_ENV) or _REPO / ".venv-mesh-sandbox")


def venv_python() -> Path:
    python = venv_dir() / "bin" / "python"
    if not python.exists():
        raise InputError(
            f"mesh-sandbox's virtualenv is missing ({python}); create it with `make install` or "
            f"`python3 -m venv {venv_dir()} && {venv_dir()}/bin/pip install -r requirements-mesh-sandbox.txt`",
            field=VENV_ENV,
        )
    return python


def free_port() -> int:
    """A port nobody listens on now (never 8080): the kernel picks it, so parallel runs do not clash."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(*, port: int | None = None, log_path: str | Path | None = None) -> Sandbox:
    """Start mesh-sandbox and wait until its health check answers; raises if it does not within 30 s."""
    python = venv_python()
    port = port or free_port()
    if port == 8080:
        raise InputError("port 8080 belongs to Airflow's web server; pick another", field="port")
    log_file = Path(log_path) if log_path else config.data_dir() / f"mesh-sandbox-{port}.log"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "STORE_MODE": "memory",
        "AUTH_MODE": "full",
        "SHARED_KEY": SHARED_KEY,
        "ENV": "local",
    }
    command = [str(python), "-m", "uvicorn", "mesh_sandbox.api:app", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            [*command, "--log-level", "warning"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    sandbox = Sandbox(url=f"http://127.0.0.1:{port}", pid=process.pid, log_path=str(log_file))
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mesh-sandbox exited with code {process.returncode}; see {log_file}")
        if healthy(sandbox.url):
            return sandbox
        time.sleep(0.2)
    stop(sandbox)
    raise RuntimeError(f"mesh-sandbox did not answer within {_STARTUP_SECONDS:.0f}s; see {log_file}")


def healthy(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=1) as response:
        return bool(response.status == 200)
    return False


def stop(sandbox: Sandbox, *, wait: float = 10.0) -> None:
    """Stop the server's process group: SIGTERM, then SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(sandbox.pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(sandbox.pid, os.WNOHANG)[0]:
                    return
            try:
                os.kill(sandbox.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.killpg(sandbox.pid, signal.SIGKILL)


@contextlib.contextmanager
def running(*, port: int | None = None) -> Iterator[Sandbox]:
    """A mesh-sandbox for the length of a ``with`` block."""
    sandbox = start(port=port)
    try:
        yield sandbox
    finally:
        stop(sandbox)


def state_file() -> Path:
    return config.data_dir() / "mesh-sandbox.json"


def save_state(sandbox: Sandbox) -> Path:
    """Remember a detached sandbox (``optout sandbox up``) so ``down`` can stop it."""
    path = state_file()
    path.write_text(json.dumps(asdict(sandbox)))
    return path


def load_state() -> Sandbox | None:
    path = state_file()
    if not path.exists():
        return None
    return Sandbox(**json.loads(path.read_text()))
