"""OptOutStoreHook: connection fields to a store URL, the default id's fallback, test_connection, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optout.airflow.hooks.store import OptOutStoreHook
from optout.airflow.provider import get_provider_info
from optout.errors import InputError


def test_a_postgres_connection_becomes_a_sqlalchemy_url(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "optout_store", "host": "db.example", "port": 5433, "schema": "optout", "login": "o"}
    monkeypatch.setenv("AIRFLOW_CONN_OPTOUT_STORE_DEFAULT", json.dumps({**conn, "password": "p@ss/word"}))
    assert OptOutStoreHook().url == "postgresql+psycopg2://o:p%40ss%2Fword@db.example:5433/optout"


def test_a_sqlite_store_takes_its_path_from_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    conn = {"conn_type": "optout_store", "host": str(tmp_path / "s.sqlite"), "extra": {"dialect": "sqlite"}}
    monkeypatch.setenv("AIRFLOW_CONN_MY_STORE", json.dumps(conn))
    hook = OptOutStoreHook("my_store")
    assert hook.url == f"sqlite:///{tmp_path / 's.sqlite'}"
    assert hook.test_connection() == (True, "the store is reachable; it holds no published list yet")


def test_without_the_default_connection_the_cli_setting_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTOUT_STORE_URL", "sqlite:////tmp/elsewhere.sqlite")
    assert OptOutStoreHook().url == "sqlite:////tmp/elsewhere.sqlite"


def test_a_named_connection_must_exist() -> None:
    with pytest.raises(InputError, match=r"'nowhere' .* is not defined"):
        _ = OptOutStoreHook("nowhere").url


def test_an_unreachable_store_reports_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "optout_store", "host": "127.0.0.1", "port": 9, "login": "o", "password": "s3cret-pw"}
    monkeypatch.setenv("AIRFLOW_CONN_OPTOUT_STORE_DEFAULT", json.dumps(conn))
    ok, message = OptOutStoreHook().test_connection()
    assert not ok and "s3cret" not in message


def test_the_store_connection_type_and_config_are_declared() -> None:
    info = get_provider_info()
    (store,) = [c for c in info["connection-types"] if c["connection-type"] == "optout_store"]
    assert store["hook-class-name"] == "optout.airflow.hooks.store.OptOutStoreHook"
    options = info["config"]["optout"]["options"]
    assert options["store_url"]["sensitive"] is True
    assert set(options) >= {"store_url", "export_operators"}


def test_airflow_lists_the_optout_options_and_hides_the_store_url() -> None:
    from airflow.configuration import conf

    conf.load_providers_configuration()
    assert conf.has_option("optout", "export_operators")
    assert ("optout", "store_url") in conf.sensitive_config_values


def test_every_optout_option_the_code_reads_is_declared() -> None:
    """``airflow config list`` documents exactly what the code reads from ``[optout]``."""
    import re

    root = Path(__file__).resolve().parents[2] / "plugins" / "optout"
    # The settings module's own readers (``option("x")``), not a method such as Spark's ``.option("x", ...)``.
    pattern = re.compile(r"""(?:conf\.get\w*\(\s*"optout",\s*|(?<!\.)\b(?:option|flag|read)\()"(\w+)\"""")
    read = {name for path in root.rglob("*.py") for name in pattern.findall(path.read_text())}
    assert {"retain_outputs", "unscoped_dags", "store_url"} <= read
    assert read and read <= set(get_provider_info()["config"]["optout"]["options"])
