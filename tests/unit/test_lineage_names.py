"""Lineage dataset names: files by path, database tables by host (never a password), Spark by server."""

from __future__ import annotations

from pathlib import Path

from optout import lineage
from optout.purpose import Purpose
from optout.spec import ExtractSpec, TableSpec


def _spec(*tables: TableSpec, engine: str | None = None) -> ExtractSpec:
    return ExtractSpec("x", Purpose.RESEARCH, tables, engine=engine)


def test_files_are_named_by_absolute_path(tmp_path: Path) -> None:
    spec = _spec(TableSpec("patients", tmp_path / "in" / "patients.csv", nhs_number="nhs"))
    assert lineage.Namer(spec).sources() == [lineage.DatasetName("file", str(tmp_path / "in" / "patients.csv"))]
    written = lineage.DatasetName("file", str(tmp_path / "out" / "patients.csv"))
    assert lineage.Namer(spec).outputs(tmp_path / "out") == [written]


def test_database_tables_are_named_by_host_never_by_password() -> None:
    url = "postgresql+psycopg2://alice:s3cret@db.example:5433/warehouse"
    spec = _spec(TableSpec("patients", table="public.patients", nhs_number="nhs", connection=url))
    (source,) = lineage.Namer(spec).sources()
    (output,) = lineage.Namer(spec).outputs(Path("/unused"))
    assert source == lineage.DatasetName("postgresql://db.example:5433", "warehouse.public.patients")
    assert output == lineage.DatasetName("postgresql://db.example:5433", "warehouse.patients_optout")
    assert "s3cret" not in repr((source, output)) and "alice" not in repr((source, output))


def test_spark_tables_are_named_by_their_server() -> None:
    spec = _spec(
        TableSpec("patients", table="cohort.patients", nhs_number="nhs", connection="sc://spark.example:15002"),
        engine="spark",
    )
    assert lineage.Namer(spec).sources() == [lineage.DatasetName("spark://spark.example:15002", "cohort.patients")]
    output = lineage.DatasetName("spark://spark.example:15002", "patients_optout")  # a Spark table, not a file
    assert lineage.Namer(spec).outputs(Path("/out")) == [output]
    query = TableSpec(
        "patients", query="SELECT * FROM cohort.patients", nhs_number="nhs", connection="sc://spark.example:15002"
    )
    named = lineage.Namer(_spec(query, engine="spark"))
    assert named.sources() == [lineage.DatasetName("spark://spark.example:15002", "patients")]
    assert named.outputs(Path("/out")) == [output]
