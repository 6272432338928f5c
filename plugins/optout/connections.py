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


def register(*, url: Reader, secret: Reader) -> None:
    """Install the readers of connection ids: ``url`` gives a SQLAlchemy URL, ``secret`` a password."""
    _readers["url"] = url
    _readers["secret"] = secret


def database_url(connection: str) -> str:
    """A SQLAlchemy URL as given, or the URL of an Airflow connection id."""
    if "://" in connection:
        return connection
    reader = _readers.get("url")
    if reader is None:
        raise InputError(
            f"connection {connection!r} is not a SQLAlchemy URL (dialect://...); an Airflow connection id "
            "can only be read inside Airflow",
            field="connection",
        )
    url = reader(connection)
    if not url:
        raise InputError(f"Airflow connection {connection!r} has no host or URL", field="connection")
    return url


def secret_reader() -> Reader | None:
    """The registered reader of Airflow connection passwords, if running inside Airflow."""
    return _readers.get("secret")
