"""mesh-sandbox for the MESH tests: one real server per session (its own venv), one stand-in per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def root_conftest(config: pytest.Config) -> ModuleType:
    """tests/conftest.py as pytest loaded it. Importing it again (``tests.conftest``) would run it twice:
    a second private AIRFLOW_HOME, and the Airflow database migrated in the first one is no longer used."""
    for plugin in config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", None) == str(ROOT_CONFTEST):
            return plugin  # type: ignore[no-any-return]
    raise RuntimeError(f"{ROOT_CONFTEST} is not loaded")


@pytest.fixture(scope="session")
def mesh_sandbox(pytestconfig: pytest.Config) -> Iterator[object]:
    """A real mesh-sandbox (STORE_MODE=memory, AUTH_MODE=full) on a free loopback port."""
    from optout.errors import InputError
    from optout.sandbox import server

    try:
        server.venv_python()
    except InputError as exc:
        root_conftest(pytestconfig).service_missing(f"mesh-sandbox ({exc})")
    with server.running() as sandbox:
        yield sandbox


@pytest.fixture
def mesh_connection(mesh_sandbox, monkeypatch: pytest.MonkeyPatch) -> str:  # type: ignore[no-untyped-def]
    """``mesh_default`` pointing at the sandbox, the way the demo sets it."""
    value = mesh_sandbox.airflow_connection()
    monkeypatch.setenv("AIRFLOW_CONN_MESH_DEFAULT", value)
    return value


@pytest.fixture
def stand_in(mesh_sandbox) -> Iterator[Callable[..., object]]:  # type: ignore[no-untyped-def]
    """Start the national-service stand-in for this test: ``stand_in(opt_outs, behaviour=..., delay=...)``."""
    from optout.sandbox import server
    from optout.sandbox.standin import StandIn

    started = []

    def start(opt_outs, **options):  # type: ignore[no-untyped-def]
        service = StandIn(mesh_sandbox.settings(mailbox=server.SERVICE_MAILBOX), opt_outs, poll=0.1, **options)
        started.append((service, service.start_thread()))
        return service

    yield start
    for service, thread in started:
        service.stop()
        thread.join(timeout=10)
