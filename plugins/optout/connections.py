"""Named connections the library cannot read itself: database URLs and secrets kept by Airflow.

The library never imports Airflow. A spec may name an Airflow connection id (a warehouse, or where a
pseudonymisation key lives); the Airflow skin registers readers for those when it is imported
(``optout.airflow``), and outside Airflow such a name is a clear error rather than a guess.
"""

from __future__ import annotations

from collections.abc import Callable

from optout.errors import InputError

Reader = Callable[[str], str | None]
_readers: dict[str, Reader] = {}


def register(*, url: Reader, secret: Reader, spark: Reader | None = None) -> None:
    """Install the readers of connection ids: ``url`` gives a SQLAlchemy URL, ``secret`` a password,
    ``spark`` a Spark Connect URL."""
    _readers["url"] = url
    _readers["secret"] = secret
    if spark is not None:
        _readers["spark"] = spark


def database_url(connection: str) -> str:
    """A SQLAlchemy URL as given, or the URL of an Airflow connection id."""
    if "://" in connection:
        return connection
    return _read("url", connection, "a SQLAlchemy URL (dialect://...)")


def spark_url(connection: str | None) -> str | None:
    """A Spark Connect URL as given (``sc://...``), the URL of an Airflow ``spark_connect`` connection id,
    or None (a local Spark session)."""
    if connection is None or connection.startswith("sc://"):
        return connection
    return _read("spark", connection, "a Spark Connect URL (sc://host:port)")


def _read(kind: str, connection: str, what: str) -> str:
    reader = _readers.get(kind)
    if reader is None:
        raise InputError(
            f"connection {connection!r} is not {what}; an Airflow connection id can only be read inside Airflow",
            field="connection",
        )
    url = reader(connection)
    if not url:
        raise InputError(f"Airflow connection {connection!r} has no host or URL", field="connection")
    return url


def secret_reader() -> Reader | None:
    """The registered reader of Airflow connection passwords, if running inside Airflow."""
    return _readers.get("secret")
