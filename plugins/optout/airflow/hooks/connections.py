"""Airflow connection ids that a spec may name: a warehouse (SQL engine) and a pseudonymisation key.

The library cannot read Airflow connections; :func:`register_readers` hands it two readers (called by
the filter operator before it runs, never at import). The key is the connection's password and is
never logged.
"""

from __future__ import annotations


def connection_url(conn_id: str) -> str:
    """The connection's SQLAlchemy URL; PostgreSQL through psycopg2, the driver installed with Airflow."""
    from airflow.sdk import BaseHook

    uri = BaseHook.get_connection(conn_id).get_uri()
    scheme, _, rest = uri.partition("://")
    return f"postgresql+psycopg2://{rest}" if scheme in ("postgres", "postgresql") else uri


def connection_secret(conn_id: str) -> str | None:
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id).password


def register_readers() -> None:
    """Let the library resolve Airflow connection ids in specs (idempotent)."""
    from optout import connections

    connections.register(url=connection_url, secret=connection_secret)
