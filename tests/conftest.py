"""Shared fixtures. Services that a test needs must exist under CI=true: a missing one fails the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# CI replays the same examples every run (a landing must not hinge on a lucky draw) with no per-example
# deadline (a shared, loaded machine made a 200 ms deadline flaky); developers explore new ones each run
# and pin what they find with @example.
settings.register_profile("ci", derandomize=True, database=None, deadline=None)
if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_ADMIN_URL = os.environ.get("OPTOUT_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")

# Airflow reads its configuration once, at first import: point it at a private home before any test does.
# Reused when this file is imported a second time under another name (``from tests.conftest import``).
AIRFLOW_HOME = Path(os.environ.get("OPTOUT_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="optout-airflow-home-"))
os.environ["OPTOUT_TEST_AIRFLOW_HOME"] = str(AIRFLOW_HOME)
AIRFLOW_ENV = {
    "AIRFLOW_HOME": str(AIRFLOW_HOME),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(AIRFLOW_HOME / "logs"),
    # dag.test() runs only DAGs found in a bundle: the examples, and the test DAGs (some broken on purpose).
    "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
        [
            {
                "name": "dags-folder",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(ROOT / "dags")},
            },
            {
                "name": "test-dags",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(ROOT / "tests" / "dags")},
            },
        ]
    ),
}
os.environ.update(AIRFLOW_ENV)


def service_missing(what: str) -> None:
    """Skip on a developer machine without the service; fail under CI, where it must be there."""
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true but is not reachable")
    pytest.skip(f"{what} is not reachable")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own data folder and SQLite store unless it sets its own."""
    monkeypatch.setenv("OPTOUT_HOME", str(tmp_path / "optout-home"))
    monkeypatch.delenv("OPTOUT_STORE_URL", raising=False)
    monkeypatch.delenv("OPTOUT_MAX_AGE", raising=False)


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:
        service_missing(f"PostgreSQL at {PG_ADMIN_URL} ({type(exc).__name__})")
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import sqlalchemy as sa

    name = f"optout_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = pg_server_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run a store test on both backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata database (SQLite) in the session's private AIRFLOW_HOME."""
    marker = AIRFLOW_HOME / ".migrated"
    if not marker.exists():
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            check=True,
            env={**os.environ, **AIRFLOW_ENV},
            capture_output=True,
        )
        marker.touch()
    return AIRFLOW_HOME


@pytest.fixture
def load_dag(airflow_db: Path):  # type: ignore[no-untyped-def]
    """Load one DAG from a file in a configured bundle (dags/ or tests/dags/) through a real DagBag."""

    def load(path: str | Path, dag_id: str):  # type: ignore[no-untyped-def]
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(path))
        assert not bag.import_errors, bag.import_errors
        return bag.get_dag(dag_id)

    return load


LAYERS = ("unit", "reliability", "integration")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Quick layers first (unit, reliability, integration, then anything else), each in file order, so a
    broken unit test shows in the first minute of `make test`, not after the slow services."""

    def layer(item: pytest.Item) -> int:
        parts = Path(str(item.path)).relative_to(ROOT / "tests").parts
        return LAYERS.index(parts[0]) if parts and parts[0] in LAYERS else len(LAYERS)

    items.sort(key=layer)  # stable: the order inside a layer is kept


@pytest.fixture(scope="session")
def spark_connect_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Spark Connect server (the pip package's, on Java 17) on a free loopback port, stopped by its
    PID at the end of the session; its URL, ``sc://127.0.0.1:<port>``."""
    from tests import spark_server

    try:
        server = spark_server.start(tmp_path_factory.mktemp("spark-connect"))
    except (spark_server.SparkServerError, ImportError) as exc:
        service_missing(f"a Spark Connect server ({exc})")
    try:
        yield server.url
    finally:
        spark_server.stop(server.pid)


@pytest.fixture(scope="session")
def spark(spark_connect_url: str):  # type: ignore[no-untyped-def]
    """A Spark Connect session on the test server."""
    from pyspark.sql import SparkSession

    session = SparkSession.builder.remote(spark_connect_url).getOrCreate()
    yield session
    session.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration), pytest.param("duckdb")])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind the SQL home pushes the filter into (a DuckDB file, run for real)."""
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'extract.duckdb'}"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'extract.sqlite'}"
    return request.getfixturevalue("pg_url")
