"""The production topology without Docker: CeleryExecutor, real processes, PostgreSQL and Redis.

The test starts ``airflow api-server`` (the workers' execution API), ``scheduler``, ``dag-processor``,
``triggerer`` (the reply wait defers to it) and ``celery worker`` as subprocesses in a private
AIRFLOW_HOME, with a fresh PostgreSQL database for the metadata and the opt-out store and a dedicated
Redis database as the broker. It triggers the nightly refresh (answered by the national-service stand-in
over a real mesh-sandbox); the refresh's ``optout://cleared-list`` Asset then starts the research
extract, and both runs must succeed. Every process group is killed afterwards; the ``pg_url`` fixture
drops the database.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import service_missing

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("OPTOUT_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
SAMPLE = ROOT / "include" / "sample"
DEADLINE_SECONDS = 220
DAG_IDS = ("optout_nightly_refresh", "research_extract")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A dedicated Redis database for the Celery broker, emptied before and after."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_missing(f"Redis at {REDIS_URL} ({type(exc).__name__})")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


def airflow_env(home: Path, pg_url: str, redis_url: str, api_port: int, mesh_connection: str) -> dict[str, str]:
    """One environment for every process: CeleryExecutor, PostgreSQL metadata + store, Redis broker."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPTOUT_"))}
    return {
        **inherited,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__CORE__FERNET_KEY": "",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_url,
        "AIRFLOW__CELERY__BROKER_URL": redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + pg_url,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        "AIRFLOW_CONN_MESH_DEFAULT": mesh_connection,
        "OPTOUT_STORE_URL": pg_url,
        "OPTOUT_HOME": str(home / "optout"),
        "PYTHONUNBUFFERED": "1",
    }


class Processes:
    """Airflow components as process groups, each logging to a file; stopped together."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def airflow(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True, timeout=timeout, check=False
        )

    def start(self, name: str, *args: str) -> None:
        with open(self.logs / f"{name}.log", "ab") as log:
            self.started[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        for name, process in self.started.items():
            if process.poll() is not None:
                pytest.fail(f"airflow {name} exited with code {process.returncode}; see {self.logs / name}.log")

    def stop(self) -> None:
        for process in self.started.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.started.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def wait_for(what: str, check: Callable[[], bool], processes: Processes, deadline: float) -> None:
    while time.monotonic() < deadline:
        processes.check_alive()
        if check():
            return
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}; component logs are in {processes.logs}")


def _api_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_refresh_and_research_extract_run_on_celery_workers(  # type: ignore[no-untyped-def]
    pg_url: str, redis_url: str, mesh_sandbox, stand_in, tmp_path: Path
) -> None:
    from optout.sandbox.standin import read_opt_outs

    started_at = time.monotonic()
    deadline = started_at + DEADLINE_SECONDS
    api_port = _free_port()
    home = tmp_path / "airflow-home"
    (home / "optout").mkdir(parents=True)
    env = airflow_env(home, pg_url, redis_url, api_port, mesh_sandbox.airflow_connection())
    processes = Processes(env, tmp_path)
    engine = sa.create_engine(pg_url)
    opt_outs = tmp_path / "opt_outs.txt"  # the sample's CSV without its header
    opt_outs.write_text("".join((SAMPLE / "opted_out.csv").read_text().splitlines(keepends=True)[1:]))
    stand_in(read_opt_outs(opt_outs))
    try:
        migrated = processes.airflow("db", "migrate")
        assert migrated.returncode == 0, migrated.stderr.decode(errors="replace")[-2000:]
        processes.start("api-server", "api-server", "--port", str(api_port))
        processes.start("scheduler", "scheduler")
        processes.start("dag-processor", "dag-processor")
        processes.start("triggerer", "triggerer")  # the reply wait defers to it
        processes.start("celery-worker", "celery", "worker", "--concurrency", "2")

        def parsed() -> bool:
            with engine.connect() as conn:
                found = conn.execute(sa.text("select dag_id from dag")).scalars().all()
            return set(DAG_IDS) <= set(found)

        wait_for("the DAGs to be parsed", lambda: _tables_exist(engine) and parsed(), processes, deadline)
        with engine.begin() as conn:
            # Unpause only our two DAGs, and keep the nightly schedule from adding a run of its own (one for
            # last night, without a cohort): the test triggers the run it watches.
            conn.execute(
                sa.text("update dag set is_paused = false, next_dagrun_create_after = null where dag_id in :ids"),
                {"ids": DAG_IDS},
            )
        wait_for("the api-server", lambda: _api_up(api_port), processes, deadline)
        conf = {"cohort_paths": [str(SAMPLE / "cohort.csv")], "id_column": "nhs_number"}
        trigger = ["dags", "trigger", DAG_IDS[0], "--run-id", "celery_test", "--conf", json.dumps(conf)]
        triggered = processes.airflow(*trigger)
        assert triggered.returncode == 0, triggered.stderr.decode(errors="replace")[-2000:]

        def finished(dag_id: str, run_id: str | None = None) -> bool:
            """Whether the DAG has a successful run (``run_id``'s, when given: a run the scheduler added of its
            own, for last night and without a cohort, may fail beside the one the test triggered)."""
            query = "select state from dag_run where dag_id = :d" + (" and run_id = :r" if run_id else "")
            with engine.connect() as conn:
                found = set(conn.execute(sa.text(query), {"d": dag_id, "r": run_id}).scalars())
            if "failed" in found:
                pytest.fail(f"{dag_id} failed: {_task_states(engine, dag_id)}; logs in {home / 'logs'}")
            return "success" in found

        wait_for(
            "the nightly refresh to succeed",
            lambda: finished("optout_nightly_refresh", "celery_test"),
            processes,
            deadline,
        )
        wait_for("the research extract to succeed", lambda: finished("research_extract"), processes, deadline)
        assert _task_states(engine, "research_extract") == {
            "filter": "success",
            "validate": "success",
            "export": "success",
        }
        with engine.connect() as conn:
            published = conn.execute(sa.text("select count(*) from optout_versions where status = 'published'"))
            assert published.scalar_one() == 1
        assert time.monotonic() - started_at < DEADLINE_SECONDS
        _assert_no_numbers_in(tmp_path)
        _assert_no_secrets_in(tmp_path)
    finally:
        processes.stop()
        engine.dispose()


def _tables_exist(engine: sa.Engine) -> bool:
    return "dag" in sa.inspect(engine).get_table_names()


def _task_states(engine: sa.Engine, dag_id: str) -> dict[str, str | None]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select task_id, state from task_instance where dag_id = :d"), {"d": dag_id})
        return {task_id: state for task_id, state in rows}


def _assert_no_numbers_in(folder: Path) -> None:
    """No cohort NHS number appears in any component or task log (counted, never shown)."""
    cohort = {line.strip().encode() for line in (SAMPLE / "cohort.csv").read_text().splitlines()[1:] if line.strip()}
    logs = [path for path in folder.rglob("*.log") if path.is_file()]
    leaked = sum(1 for path in logs for number in cohort if number in path.read_bytes())
    assert logs and leaked == 0, f"{leaked} NHS number(s) of the cohort appeared in the logs"


def _assert_no_secrets_in(folder: Path) -> None:
    """The MESH shared secret the workers used appears in no log file (the sandbox's password is the word
    "password", which logs may contain for other reasons)."""
    from optout.sandbox import server

    logs = [path.read_bytes() for path in folder.rglob("*.log") if path.is_file()]
    assert not any(server.SHARED_KEY.encode() in log for log in logs), "the MESH shared secret appeared in a log"
