"""What lineage says about an extract: the datasets it read and wrote, and what the opt-out removed.

Pure facts (no Airflow, no OpenLineage): the Airflow skin turns them into OpenLineage datasets and a run
facet. Dataset names follow OpenLineage's naming: files are ``file`` + absolute path, database tables the
database's ``scheme://host:port`` + ``database.schema.table`` (never a user or password), Spark tables the
Spark Connect server's ``spark://host:port``. The removals are counts by reason: never a number, never a cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optout.resolver import OUTSIDE_AIRFLOW, Resolver

if TYPE_CHECKING:
    from optout.manifest import Manifest
    from optout.spec import ExtractSpec, TableSpec


@dataclass(frozen=True)
class DatasetName:
    """One OpenLineage dataset: ``namespace`` says where it lives, ``name`` which one."""

    namespace: str
    name: str


class Namer:
    """Names the datasets of one extract; ``resolver`` reads the connection ids its spec names (only the
    host and port of a database are kept)."""

    def __init__(self, spec: ExtractSpec, resolver: Resolver = OUTSIDE_AIRFLOW) -> None:
        self.spec = spec
        self.resolver = resolver

    def sources(self) -> list[DatasetName]:
        """The datasets the extract reads (a query stands under its table's name: we do not parse it)."""
        return [
            self._dataset(table, (table.table or table.name) if table.in_database else None)
            for table in self.spec.tables
        ]

    def outputs(self, out_dir: Path) -> list[DatasetName]:
        """The datasets the filter wrote: files (or Spark's folders) under ``out_dir``, or tables back in the
        source database or Spark."""
        return [
            self._dataset(table, table.output_name) if table.in_database else file(out_dir / table.output_name)
            for table in self.spec.tables
        ]

    def _dataset(self, table: TableSpec, name: str | None) -> DatasetName:
        if table.path is not None and name is None:  # a file, or a path Spark reads
            return file(table.path)
        if self.spec.engine == "spark":
            return DatasetName(self._spark_namespace(), name or table.name)
        return self._database(table.connection, name or table.name)

    def _database(self, connection: str | None, name: str) -> DatasetName:
        from sqlalchemy.engine import make_url

        if connection is None:
            return DatasetName("database", name)
        url = make_url(self.resolver.database_url(connection))
        scheme = url.get_backend_name()
        if url.host is None:  # a file database (SQLite, DuckDB): the file is where it lives
            return DatasetName(scheme, f"{url.database or ':memory:'}.{name}")
        port = f":{url.port}" if url.port else ""
        qualified = f"{url.database}.{name}" if url.database and name.count(".") < 2 else name
        return DatasetName(f"{scheme}://{url.host}{port}", qualified)

    def _spark_namespace(self) -> str:
        url = self.resolver.spark_url(self.spec.spark_connection)
        if url is None:
            return "spark://local"
        hostport = url.removeprefix("sc://").split("/", 1)[0].split(";", 1)[0]
        return f"spark://{hostport}"


def file(path: Path) -> DatasetName:
    return DatasetName("file", str(Path(path).resolve()))


def run_facts(manifest: Manifest) -> dict[str, Any]:
    """The custom run facet's fields: why the data moves, against which list, and what was removed.

    ``listAgeSeconds`` is the list's age when it was used (its check time to the filter time), the age
    the freshness rule judged.
    """
    age = None
    if manifest.checked_at is not None:
        age = int((manifest.filtered_at - manifest.checked_at).total_seconds())
    rows_removed: dict[str, int] = {}
    for table in manifest.tables:
        for reason, count in table.removed.items():
            if count:
                rows_removed[reason] = rows_removed.get(reason, 0) + int(count)
    return {
        "extract": manifest.spec_name,
        "purpose": manifest.purpose,
        "legalBasis": manifest.legal_basis,
        "legalReference": manifest.legal_reference,
        "filtered": manifest.filtered,
        "listVersion": manifest.version_id,
        "listCheckedAt": _iso(manifest.checked_at),
        "listAgeSeconds": age,
        "rowsIn": manifest.rows_in,
        "rowsOut": manifest.rows_out,
        "rowsRemovedByReason": rows_removed,
        "peopleRemovedByReason": {reason: int(count) for reason, count in manifest.people_removed.items() if count},
    }


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()
