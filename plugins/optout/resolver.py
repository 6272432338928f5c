"""How the connections a spec names become URLs and secrets: a resolver the caller hands in.

The library never imports Airflow and keeps no registry. A spec may name a connection as a URL (a
SQLAlchemy ``dialect://...`` or a Spark Connect ``sc://...``), which works anywhere, or as an Airflow
connection id (a warehouse, a Spark Connect server, where a pseudonymisation key lives), which only
Airflow can read. So the filter, the validation and the gate take a :class:`Resolver`: the Airflow skin
builds one from its hooks (:func:`optout.airflow.hooks.connections.airflow_resolver`); everywhere else
it is :data:`OUTSIDE_AIRFLOW`, with which a connection id is a clear error, never a guess.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from optout.errors import InputError

Reader = Callable[[str], str | None]


@dataclass(frozen=True)
class Resolver:
    """Readers of connection ids (None: that kind cannot be read here).

    :param url: a connection id -> its SQLAlchemy URL.
    :param secret: a connection id -> its password (a pseudonymisation key); never logged.
    :param spark: a connection id -> its Spark Connect URL.
    """

    url: Reader | None = None
    secret: Reader | None = None
    spark: Reader | None = None

    def database_url(self, connection: str) -> str:
        """A SQLAlchemy URL as given, or the URL of a connection id."""
        if "://" in connection:
            return connection
        return _read(self.url, connection, "a SQLAlchemy URL (dialect://...)")

    def spark_url(self, connection: str | None) -> str | None:
        """A Spark Connect URL as given (``sc://...``), the URL of a connection id, or None (a local
        Spark session)."""
        if connection is None or connection.startswith("sc://"):
            return connection
        return _read(self.spark, connection, "a Spark Connect URL (sc://host:port)")


OUTSIDE_AIRFLOW = Resolver()  # URLs only: a connection id is refused with a line saying why


def _read(reader: Reader | None, connection: str, what: str) -> str:
    if reader is None:
        raise InputError(
            f"connection {connection!r} is not {what}; an Airflow connection id can only be read inside Airflow",
            field="connection",
        )
    url = reader(connection)
    if not url:
        raise InputError(f"Airflow connection {connection!r} has no host or URL", field="connection")
    return url
