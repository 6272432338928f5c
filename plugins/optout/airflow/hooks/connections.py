"""Airflow connection ids that a spec may name: a warehouse (SQL engine), a Spark Connect server and a
pseudonymisation key.

The library cannot read Airflow connections and looks nothing up: each operator hands it
:func:`airflow_resolver` (an :class:`optout.resolver.Resolver` over these readers) explicitly. The key
is the connection's password and is never logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from optout.resolver import Resolver


def connection_url(conn_id: str) -> str:
    """The connection's SQLAlchemy URL; PostgreSQL through psycopg2, the driver installed with Airflow."""
    conn = _connection(conn_id)
    if conn.conn_type == "sqlite":  # Airflow keeps the file's path in host; its URI form is not SQLAlchemy's
        return f"sqlite:///{conn.host}"
    uri = conn.get_uri()
    scheme, _, rest = uri.partition("://")
    return masked(conn, f"postgresql+psycopg2://{rest}" if scheme in ("postgres", "postgresql") else uri)


def masked(conn: Connection, url: str) -> str:
    """``url``, after telling Airflow's secrets masker the connection's password and the URL that holds
    it (percent-encoded, perhaps), so neither shows in a task log."""
    if conn.password:
        from airflow.sdk.log import mask_secret

        mask_secret(conn.password)
        mask_secret(url)
    return url


def connection_secret(conn_id: str) -> str | None:
    return _connection(conn_id).password


def _connection(conn_id: str) -> Connection:
    """The connection, or an InputError that says how to define it (the spec named a missing one)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from optout.errors import InputError

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise InputError(
            f"Airflow connection {conn_id!r} is not defined; add it (UI, `airflow connections add` or "
            f"AIRFLOW_CONN_{conn_id.upper()})",
            field="connection",
        ) from None


def spark_connect_url(conn_id: str) -> str:
    """The ``sc://`` URL of a connection of the Spark provider's ``spark_connect`` type (token and user
    id as the provider's hook puts them), masked in task logs."""
    from airflow.providers.apache.spark.hooks.spark_connect import SparkConnectHook

    conn = _connection(conn_id)  # a missing connection is an InputError saying how to add it
    return masked(conn, SparkConnectHook(conn_id).get_connection_url())  # a token is the password


def airflow_resolver() -> Resolver:
    """What the library is given to read the Airflow connection ids a spec names (read only when used)."""
    from optout.resolver import Resolver

    return Resolver(url=connection_url, secret=connection_secret, spark=spark_connect_url)
