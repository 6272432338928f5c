"""Secrets of our connection types are masked: by name (``redact``) and in a real task's log."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from optout.airflow.provider import get_provider_info

MESH_PASSWORD = "mesh-pass-8d1f2c"
SHARED_SECRET = "shared-secret-5be9a0"
STORE_PASSWORD = "store-pass-c3a7e1"


def test_every_secret_field_of_our_connection_types_is_masked_by_name() -> None:
    from airflow.sdk.log import redact

    for conn_type in get_provider_info()["connection-types"]:
        for name, field in conn_type["conn-fields"].items():
            secret = field["schema"].get("format") == "password"
            assert (redact({name: "value-123456"}) == {name: "***"}) is secret, (conn_type["connection-type"], name)


def test_the_mesh_extras_are_redacted_as_airflow_reads_them() -> None:
    from airflow.sdk import Connection
    from airflow.sdk.log import redact

    conn = Connection(conn_id="m", conn_type="mesh", extra=json.dumps({"shared_secret": SHARED_SECRET}))
    assert redact(conn.extra_dejson) == {"shared_secret": "***"}


CARELESS_TASK = """
import logging
from airflow.sdk.log import configure_logging
from optout.airflow.hooks.mesh import MeshHook
from optout.airflow.hooks.store import OptOutStoreHook

configure_logging()  # what a worker's task process runs before the task: the task SDK's processors
settings = MeshHook().settings
log = logging.getLogger("careless")
log.info("MESH password %s, shared secret %s", settings.password, settings.shared_key)
log.info("store at %s", OptOutStoreHook("optout_store_secret").url)
"""


def test_a_task_that_logs_its_secrets_shows_stars() -> None:
    """The hooks register every secret they read, so even a task that prints them logs ``***``.

    (``dag.test()`` and ``airflow tasks test`` run tasks with the CLI's logging, which does not mask:
    the worker's logging is what a real task log goes through. ``test_celery`` checks real task log files.)
    """
    mesh = {
        "conn_type": "mesh",
        "host": "http://127.0.0.1:9",
        "login": "OURBOX01",
        "password": MESH_PASSWORD,
        "extra": {"shared_secret": SHARED_SECRET, "service_mailbox": "X26HC065"},
    }
    store = {"conn_type": "optout_store", "host": "db.example", "login": "optout", "password": STORE_PASSWORD}
    env = {
        **os.environ,
        "AIRFLOW_CONN_MESH_DEFAULT": json.dumps(mesh),
        "AIRFLOW_CONN_OPTOUT_STORE_SECRET": json.dumps(store),
    }
    done = subprocess.run(
        [sys.executable, "-c", CARELESS_TASK], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    text = done.stdout + done.stderr
    assert "MESH password ***, shared secret ***" in text
    assert "store at ***" in text
    for secret in (MESH_PASSWORD, SHARED_SECRET, STORE_PASSWORD):
        assert secret not in text
