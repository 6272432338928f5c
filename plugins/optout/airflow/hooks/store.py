"""``OptOutStoreHook``: the check store and disclosure ledger behind an Airflow connection of type ``optout_store``.

Connection fields: host, port, schema (the database), login and password of the database; the extra
``dialect`` names the SQLAlchemy driver (default ``postgresql+psycopg2``; ``sqlite`` takes the file's path
from host). Only when the default connection ``optout_store_default`` is not defined does the hook use
``[optout] store_url``, then ``OPTOUT_STORE_URL`` (or the per-user SQLite file) as the CLI does; any
other id must exist. The password and the URL are registered with Airflow's secrets masker, so a log
that prints the URL shows ``***``.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from optout.store import Store

DEFAULT_DIALECT = "postgresql+psycopg2"


class OptOutStoreHook(BaseHook):
    """Open the opt-out store (and its ledger) named by an Airflow connection.

    :param store_conn_id: the Airflow connection (type ``optout_store``) to use.
    """

    conn_name_attr = "store_conn_id"
    default_conn_name = "optout_store_default"
    conn_type = "optout_store"
    hook_name = "Opt-out store"

    def __init__(self, store_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.store_conn_id = store_conn_id

    @cached_property
    def url(self) -> str:
        """The store's SQLAlchemy URL (from the connection, or the CLI's setting for the default id)."""
        from airflow.sdk.configuration import conf

        from optout import config

        conn = self._connection()
        if conn is not None:
            return store_url(conn)
        return conf.get("optout", "store_url", fallback="") or config.store_url()

    @cached_property
    def store(self) -> Store:
        """The store, opened once per hook."""
        from optout.store import Store

        return Store(self.url)

    def get_conn(self) -> Store:
        return self.store

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.dispose()
            del self.__dict__["store"]

    def test_connection(self) -> tuple[bool, str]:
        """Open the store and read its current version; the message never contains the URL or a secret."""
        try:
            current = self.store.current()
        except Exception as exc:
            return False, f"could not open the opt-out store of {self.store_conn_id}: {type(exc).__name__}"
        finally:
            self.close()
        if current is None:
            return True, "the store is reachable; it holds no published list yet"
        return True, f"the store is reachable; the current list is version {current.id}"

    def _connection(self) -> Connection | None:
        from airflow.sdk.exceptions import AirflowNotFoundException

        from optout.errors import InputError

        try:
            return self.get_connection(self.store_conn_id)
        except AirflowNotFoundException:
            if self.store_conn_id == self.default_conn_name:
                return None
            raise InputError(
                f"Airflow connection {self.store_conn_id!r} (the opt-out store) is not defined; add it as type "
                f"optout_store (UI, `airflow connections add` or AIRFLOW_CONN_{self.store_conn_id.upper()})",
                field="store_conn_id",
            ) from None


def store_url(conn: Connection) -> str:
    """A connection's fields as a SQLAlchemy URL; the password is masked in logs first."""
    import sqlalchemy as sa

    from optout.airflow.hooks.connections import masked

    dialect = str(conn.extra_dejson.get("dialect") or DEFAULT_DIALECT)
    if dialect.startswith("sqlite"):
        return f"{dialect}:///{conn.host or conn.schema or ''}"
    url = sa.engine.URL.create(
        dialect, username=conn.login, password=conn.password, host=conn.host, port=conn.port, database=conn.schema
    )
    return masked(conn, url.render_as_string(hide_password=False))
