"""The proof of a Spark extract, run in Spark: every output measured where it lives, only counts collected.

Per output (a folder of parts or a Spark table), one aggregation gives its rows, its content hash, the
rows whose declared number is not cleared and the rows of people who should have been removed; one more
job applies the leak scan's rule (:mod:`optout.leak_scan`) to every cell of every column, declared or not:
each value the normaliser would read as a valid NHS number (:meth:`optout.homes.spark.SparkRun.leaks`, no
Python UDF) that is not in the version's cleared list is counted, per column. The
driver receives those counts and nothing else; the validation hands them to GX as for any other home.

Who should have been removed is learnt again from the inputs, by a decision of the proof's own (a key is
removed when any input row carrying it beside a number is not cleared; a key-only table's key must have
been seen beside a number), over the filter's primitives: the same reading of numbers and keys and the
same staged list (:class:`optout.homes.spark.SparkRun`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from optout.clearance import KEEP
from optout.homes import spark_sql as q
from optout.homes.files.formats import Format
from optout.homes.spark import SparkRun, SparkTable, reading
from optout.homes.spark_csv import folder_dialect, spark_encoding
from optout.homes.spark_session import JoinChoice, digest, read_output, spark_errors, union
from optout.homes.sql.run import TableMeasure
from optout.leak_scan import RAW_BYTES, ColumnLeak

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from optout.clearance import CheckResultLike
    from optout.resolver import Reader
    from optout.spec import ExtractSpec

_REMOVED = "__optout_removed"
_EDGES = b",;\t|\"'\r\n"  # what a CSV parser could take for the edge of a field, whatever the dialect


def measure_spark(
    spark: SparkSession,
    spec: ExtractSpec,
    out_dir: Path,
    check_result: CheckResultLike | None,
    secret: Reader | None = None,
) -> list[TableMeasure]:
    """Each output's counts, content hash and (for a filtered extract) uncleared rows, removed people's
    rows and leaks per column, computed in Spark (``secret``: reads a pseudonymisation key's connection)."""
    with spark_errors("proving the extract"):
        run = SparkRun(spark, spec, check_result, JoinChoice.from_env(), secret)
        filtered = check_result is not None and spec.filtered
        bad, known = _people(run) if filtered else (None, None)
        measures = []
        for table in run.tables:
            output = _output(spark, out_dir, table)
            if output is None:
                measures.append(TableMeasure(table.spec.name, present=False))
                continue
            rows_in = table.frame.count()
            if not filtered:
                rows, high, low = output.selectExpr(*q.content_hash_sql(list(output.columns))).collect()[0]
                measures.append(TableMeasure(table.spec.name, True, int(rows), rows_in, digest(int(rows), high, low)))
                continue
            measures.append(_measured(run, table, output, rows_in, bad, known, out_dir))
        return measures


def _output(spark: SparkSession, out_dir: Path, table: SparkTable) -> DataFrame | None:
    """The written output as Spark reads it (as the filter hashed it), or None when it is missing."""
    if table.spec.in_database:
        name = table.spec.output_name
        return spark.table(q.quote(name)) if spark.catalog.tableExists(name) else None
    folder = Path(out_dir) / table.spec.output_name
    return read_output(spark, str(folder)) if folder.is_dir() else None


def _people(run: SparkRun) -> tuple[DataFrame, DataFrame | None]:
    """Keys of people who are not cleared (``BAD``), and keys seen beside a number (``KNOWN``), when a
    key-only table needs them; both checkpointed, so the inputs are read once."""
    keyed = [run.coded(t).select(q.KEY, q.CODE) for t in run.tables if t.number is not None and t.key is not None]
    nobody = run.spark.range(0).selectExpr(f"{run.no_key} AS {q.KEY}", f"0 AS {q.CODE}")
    every = union([nobody, *keyed]).where(f"{q.KEY} IS NOT NULL")
    bad = every.where(f"{q.CODE} <> {KEEP}").selectExpr(q.KEY, f"TRUE AS {q.BAD}").distinct().localCheckpoint()
    if not any(t.number is None and t.key is not None for t in run.tables):
        return bad, None
    known = every.selectExpr(q.KEY, f"TRUE AS {q.KNOWN}").distinct().localCheckpoint()
    return bad, known


def _measured(
    run: SparkRun,
    table: SparkTable,
    output: DataFrame,
    rows_in: int,
    bad: Any,
    known: DataFrame | None,
    out_dir: Path,
) -> TableMeasure:
    """One output's figures in one aggregation, and its leaks in one more job."""
    columns = list(output.columns)
    types = dict(output.dtypes)
    frame = output
    uncleared = "0"
    if table.spec.nhs_number:
        frame = run.joined(table, frame.selectExpr("*"), reading(table.spec, types))
        uncleared = f"count_if({q.own_code(run.keeps_unusable)} <> {KEEP})"
    removed = "0"
    if table.spec.person_key:
        frame = frame.selectExpr("*", f"{q.key_sql(table.spec.person_key, run.integer_keys)} AS {q.KEY}")
        frame = frame.join(bad.hint("broadcast"), on=q.KEY, how="left")
        rule = f"{q.BAD} IS NOT NULL"
        if table.number is None:
            assert known is not None
            frame = frame.join(known.hint(run.hint), on=q.KEY, how="left")
            rule = f"{rule} OR {q.KNOWN} IS NULL"  # blank, or never seen beside a number: nobody checked it
        removed = f"count_if({rule})"
    figures = frame.selectExpr(*q.content_hash_sql(columns), f"{uncleared} AS u", f"{removed} AS {_REMOVED}")
    rows, high, low, uncleared_rows, removed_rows = figures.collect()[0]
    return TableMeasure(
        table.spec.name,
        True,
        int(rows),
        rows_in,
        digest(int(rows), high, low),
        uncleared_numbers=int(uncleared_rows),
        uncleared_people=int(removed_rows),
        leaks=run.leaks((table.spec.name, output)) + _raw_leaks(run, table, out_dir),
        schema=_arrow_schema(output),
    )


def _arrow_schema(output: DataFrame) -> pa.Schema:
    """The output's column names, nested fields and field metadata (comments) as an Arrow schema, for the
    proof's schema scan (:func:`optout.proof._scan_schema`): the names come from the schema on the driver,
    no row moves. A type Arrow cannot take keeps the whole schema, as Spark's JSON, in the metadata."""
    from pyspark.errors import PySparkException
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = output.schema
    try:
        return to_arrow_schema(schema)
    except (PySparkException, TypeError, ValueError):  # a type Arrow lacks; the JSON still holds every name
        return pa.schema([], metadata={"spark schema": schema.json()})


def _raw_leaks(run: SparkRun, table: SparkTable, out_dir: Path) -> list[ColumnLeak]:
    """A CSV folder output's text as Spark wrote it, line by line, cut at anything a parser could take for
    a field's edge, every piece scanned as a cell (the file scan's raw-bytes view, :data:`RAW_BYTES`). A
    UTF-16 output's parts are decoded whole first (each part one task's memory; Spark's text reader
    splits lines on bytes and reads them as UTF-8)."""
    if table.spec.in_database or table.spec.format is not Format.CSV:
        return []
    folder = Path(out_dir) / table.spec.output_name
    dialect = folder_dialect(folder)
    if dialect.utf16:  # Spark's text reader splits UTF-8 bytes: decode each part whole, then split its lines
        parts = run.spark.read.format("binaryFile").option("pathGlobFilter", "part-*").load(str(folder))
        lines = parts.selectExpr(
            f"explode(split(decode(content, '{spark_encoding(dialect)}'), '\\r\\n|\\r|\\n')) AS value"
        )
    else:
        lines = run.spark.read.text(str(folder))
    pieces = lines.selectExpr(f"{q.pieces('value', _EDGES)} AS {q.column(RAW_BYTES)}")
    return run.leaks((table.spec.name, pieces))
