"""Where an extract lives: files, pandas frames, or tables in a database, one home each.

Importing this package stays light (nothing but the standard library): the spec names a file's
format through :mod:`optout.homes.files.formats` without loading Arrow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from optout.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

    from optout.homes.base import ExtractHome
    from optout.manifest import Manifest
    from optout.resolver import Resolver
    from optout.spec import ExtractSpec

# The home that reads a written extract, by the engine its manifest records (module:class, imported on use).
HOMES = {
    "arrow_files": "optout.homes.files.home:FilesHome",
    "frames": "optout.homes.files.home:FilesHome",  # DataFrames are written out as files
    "sql": "optout.homes.sql.home:SqlHome",
    "spark": "optout.homes.spark_home:SparkHome",
}


def home_for(
    spec: ExtractSpec,
    *,
    frames: dict[str, pd.DataFrame] | None = None,
    database: sa.Engine | str | None = None,
    resolver: Resolver | None = None,
) -> ExtractHome:
    """The home of ``spec``'s tables, decided here once: the DataFrames given, the spec's database, or
    its files.

    :param database: for a spec with a ``connection``: the engine or URL to use; by default the
        connection, resolved.
    :param resolver: turns the connection ids the spec names (a warehouse, a Spark Connect server, a
        pseudonymisation key's connection) into URLs and secrets; by default URLs only (outside Airflow).
    """
    from optout.resolver import OUTSIDE_AIRFLOW

    resolver = resolver or OUTSIDE_AIRFLOW
    if frames is not None:
        from optout.homes.frames import FramesHome

        return FramesHome(spec, frames, secret=resolver.secret)
    if spec.engine == "spark":
        from optout.homes.spark_home import SparkHome

        return SparkHome(spec, resolver.spark_url(spec.spark_connection), secret=resolver.secret)
    if spec.connection is not None:
        from optout.homes.sql.home import SqlHome

        return SqlHome(spec, database or resolver.database_url(spec.connection), resolver.secret)
    from optout.homes.files.home import FilesHome

    return FilesHome(spec, secret=resolver.secret)


def home_of(manifest: Manifest, *, database: sa.Engine | str | None = None) -> ExtractHome:
    """The home holding a written extract's outputs, by the ``engine`` its manifest records (for checks
    that have the folder but not the spec: the gate, ``require_validated``).

    :param database: where an extract held in database tables lives; without it, reading them is refused.
    """
    try:
        module, _, name = HOMES[manifest.engine].partition(":")
    except KeyError:
        raise InputError(f"the manifest names an unknown engine {manifest.engine!r}; filter again") from None
    home: type[ExtractHome] = getattr(importlib.import_module(module), name)
    return home.for_outputs(database)
