"""The Spark engine: filter an extract where it lives, in Spark, with the file engine's semantics and manifest.

DataFrame methods and SQL text only (see :mod:`optout.homes.spark_sql`), so the same code runs on
classic PySpark and on Spark Connect (Databricks Connect, serverless). Only counts and content hashes
are ever collected to the driver.

1. *Stage* the check result once per version: Parquet ``<lists>/v<id>_<digest>`` of the cohort's
   numbers (BIGINT) and whether each is cleared, sent to Spark the first time a version is used and
   only checked (count and sums) on later runs.
2. *Learn*: every table with a number column is joined once to the staged list (broadcast when the
   cohort is small enough, else shuffled: ``OPTOUT_SPARK_JOIN``, ``OPTOUT_SPARK_BROADCAST_ROWS``); the
   narrow result (key, number, reason) is cached, giving each table's counts, the keys of people who
   are not cleared (each with its first reason) and, when some table carries only keys, the keys seen
   beside a number.
3. *Write*: each table's kept rows, joined again to the list and anti-joined to the (small) set of
   uncleared keys, are written under a temporary name: a folder in the staging folder for ``path``
   tables (swapped in whole with the manifest by :func:`optout.filter.run_filter`), a table
   ``<output>__optout_<tag>`` for ``table`` tables, renamed into place only when every table is written.
   Each output is read back for its content hash, and its row count must match what learning predicted
   (else the input changed while it was read).

Any Spark error is reported by its class only (a message can quote a value); a broadcast that runs out
of memory is named as such. Either way nothing is published.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from optout.cascade import TABLE_CHANGED, unfiltered_report
from optout.clearance import CODE_COUNT, KEEP, CheckResultLike, Reason, counts_by_reason, no_removals
from optout.errors import InputError, OptOutError
from optout.homes import spark_sql as q
from optout.homes.files.formats import Format
from optout.manifest import TableReport
from optout.nhs_number import names_for_message

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from optout.spec import ExtractSpec, TableSpec

ENGINE = "spark"
CONTENT_HASH_VERSION = "optout-spark-content/1"
JOIN_ENV = "OPTOUT_SPARK_JOIN"  # auto (by size), broadcast or shuffle
BROADCAST_ROWS_ENV = "OPTOUT_SPARK_BROADCAST_ROWS"
LISTS_ENV = "OPTOUT_SPARK_LISTS"  # where staged lists live (see list_location)
DRIVER_MEMORY_ENV = "OPTOUT_SPARK_DRIVER_MEMORY"  # a local session's driver memory
# 5M BIGINT numbers make a broadcast hash relation of ~100 MB: safe on a 1-2 GB driver.
DEFAULT_BROADCAST_ROWS = 5_000_000
JOINS = ("auto", "broadcast", "shuffle")
_OUT_OF_MEMORY = ("outofmemory", "out of memory", "maxbroadcasttablesize", "broadcast")


class SparkEngineError(OptOutError, RuntimeError):
    """Spark failed a step of the filter; nothing was published."""

    exit_code = 1


# ----------------------------------------------------------------------------------------- session


def session(connection: str | None = None) -> SparkSession:
    """A Spark Connect session for an ``sc://host:port`` URL, else a local classic session.

    The local session keeps its warehouse (staged lists, ``table`` outputs) under the data folder.
    """
    from pyspark.sql import SparkSession

    if connection is not None:
        if not connection.startswith("sc://"):
            raise InputError(
                "a Spark connection is an sc://host:port URL or an Airflow connection id of type spark_connect",
                field="connection",
            )
        return SparkSession.builder.remote(connection).getOrCreate()
    from optout import config

    return (
        SparkSession.builder.master("local[*]")
        .appName("optout")
        .config("spark.driver.memory", os.environ.get(DRIVER_MEMORY_ENV, "2g"))
        .config("spark.sql.warehouse.dir", str(config.data_dir() / "spark-warehouse"))
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )


@contextmanager
def spark_errors(step: str) -> Iterator[None]:
    """Spark's errors as :class:`SparkEngineError`, named by class (their messages may quote data)."""
    from pyspark.errors import PySparkException

    try:
        yield
    except (PySparkException, OSError) as exc:
        condition = _condition(exc)
        text = f"{type(exc).__name__} {condition} {exc}".lower()
        if any(word in text for word in _OUT_OF_MEMORY):
            raise SparkEngineError(
                f"Spark ran out of memory broadcasting the opt-out list while {step} ({condition}); nothing was "
                f"written. Set {JOIN_ENV}=shuffle (or lower {BROADCAST_ROWS_ENV}), or give the driver more memory"
            ) from None
        raise SparkEngineError(
            f"Spark refused {step} ({type(exc).__name__}: {condition}); nothing was written. Check that the "
            "tables and paths exist and are readable, and that the session may create tables"
        ) from None


def _condition(exc: BaseException) -> str:
    getter = getattr(exc, "getCondition", None) or getattr(exc, "getErrorClass", None)
    try:
        return str(getter()) if getter else "no error class"
    except Exception:  # the Connect client may not have one
        return "no error class"


# ----------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class JoinChoice:
    """How the list is joined: ``broadcast`` copies it to every executor, ``shuffle`` partitions both."""

    strategy: str
    broadcast_rows: int

    @classmethod
    def from_env(cls) -> JoinChoice:
        strategy = os.environ.get(JOIN_ENV, "auto").strip().lower()
        if strategy not in JOINS:
            raise InputError(f"{JOIN_ENV} is {strategy!r}; use one of {', '.join(JOINS)}", field=JOIN_ENV)
        text = os.environ.get(BROADCAST_ROWS_ENV, str(DEFAULT_BROADCAST_ROWS))
        if not text.strip().isdigit():
            raise InputError(f"{BROADCAST_ROWS_ENV} must be a whole number of rows", field=BROADCAST_ROWS_ENV)
        return cls(strategy, int(text))

    def hint(self, rows: int) -> str:
        broadcast = self.strategy == "broadcast" or (self.strategy == "auto" and rows <= self.broadcast_rows)
        return "broadcast" if broadcast else "shuffle_hash"


# ----------------------------------------------------------------------------------------- the list


def staged_list(spark: SparkSession, check_result: Any) -> DataFrame:
    """The check result's cohort as Parquet in Spark (``NUMBER`` BIGINT, ``CLEARED`` BOOLEAN), written once
    per version under :func:`list_location` and checked by count and sums before every use (a missing,
    half-written or damaged copy is written again)."""
    cohort = np.asarray(check_result.cohort, dtype=np.int64)
    cleared = np.asarray(check_result.cleared, dtype=np.int64)
    flags = np.isin(cohort, cleared, assume_unique=True)
    expected = (len(cohort), int(flags.sum()), int(cohort.sum()), int(cohort[flags].sum()))
    digest = hashlib.sha256(cohort.tobytes() + flags.tobytes()).hexdigest()[:12]
    path = f"{list_location().rstrip('/')}/v{int(check_result.info.id)}_{digest}"
    with spark_errors("staging the opt-out list"):
        if _staged_sums(spark, path) == expected:
            return spark.read.parquet(path)
        frame = spark.createDataFrame(pa.table({q.NUMBER: cohort, q.CLEARED: flags}))
        frame.write.mode("overwrite").parquet(path)
        if _staged_sums(spark, path) != expected:
            raise SparkEngineError("the opt-out list staged in Spark does not match the version; nothing was written")
        return spark.read.parquet(path)


def list_location() -> str:
    """Where staged lists live: ``OPTOUT_SPARK_LISTS`` (a path every Spark executor can read, such as
    ``abfss://...`` or ``dbfs:/...``), else ``spark-lists`` in the data folder (a local or loopback session)."""
    from optout import config

    return os.environ.get(LISTS_ENV, "").strip() or str(config.data_dir() / "spark-lists")


def _staged_sums(spark: SparkSession, path: str) -> tuple[int, int, int, int] | None:
    from pyspark.errors import PySparkException

    try:
        return _list_sums(spark.read.parquet(path))
    except PySparkException:  # not there yet, or no complete file
        return None


def _list_sums(frame: DataFrame) -> tuple[int, int, int, int]:
    row = frame.selectExpr(
        "count(*)",
        f"count_if({q.CLEARED})",
        f"coalesce(sum({q.NUMBER}), 0)",
        f"coalesce(sum(CASE WHEN {q.CLEARED} THEN {q.NUMBER} END), 0)",
    ).collect()[0]
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


# ----------------------------------------------------------------------------------------- reading


def read_table(spark: SparkSession, table: TableSpec) -> DataFrame:
    """A spec table as a DataFrame: a Spark table, or a CSV/Parquet file or folder Spark reads."""
    if table.table:
        return spark.table(q.quote(table.table))
    assert table.path is not None
    return _read_path(spark, str(table.path), table.format)


def read_output(spark: SparkSession, folder: str) -> DataFrame:
    """A folder output as Spark wrote it (its format from its name)."""
    return _read_path(spark, folder, Format.PARQUET if folder.endswith(".parquet") else Format.CSV)


def output_parts(folder: Path, kind: Format, columns: Sequence[str] | None) -> Iterator[pa.RecordBatch]:
    """A folder output's part files as Arrow batches (CSV parts: every column as text)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    for part in sorted(folder.glob("part-*")):
        if kind is Format.PARQUET:
            yield from pq.ParquetFile(part).iter_batches(columns=list(columns) if columns else None)
            continue
        read = pacsv.read_csv(part, parse_options=pacsv.ParseOptions(newlines_in_values=True))
        read = read.cast(pa.schema([(name, pa.string()) for name in read.column_names]))
        yield from (read.select(list(columns)) if columns else read).to_batches()


def _read_path(spark: SparkSession, path: str, kind: Format) -> DataFrame:
    if kind is Format.PARQUET:
        return spark.read.parquet(path)
    # Every CSV column as text, as the file engine reads it; quoted newlines and doubled quotes allowed.
    return spark.read.options(header=True, multiLine=True, escape='"', inferSchema=False).csv(path)


@dataclass
class _Table:
    """One spec table in a run: its frame, and what learning found."""

    spec: TableSpec
    frame: DataFrame
    columns: list[str]
    number: q.NumberSql | None
    key: str | None
    codes: np.ndarray  # rows per own reason code (learnt)
    expected_out: int = 0


class _Run:
    def __init__(self, spark: SparkSession, spec: ExtractSpec, check_result: Any, join: JoinChoice) -> None:
        self.spark = spark
        self.spec = spec
        self.tag = uuid.uuid4().hex[:10]
        with spark_errors("reading the tables"):
            frames = {t.name: read_table(spark, t) for t in spec.tables}
            types = {name: dict(frame.dtypes) for name, frame in frames.items()}
        for t in spec.tables:
            for name in (t.nhs_number, t.person_key):
                if name and name not in types[t.name]:
                    raise InputError(
                        f"no column {name!r}; the table has: {names_for_message(types[t.name])}",
                        path=t.path,
                        field=name,
                    )
        keyed = [types[t.name][t.person_key] for t in spec.tables if t.person_key]
        integer_keys = bool(keyed) and all(q.integer_type(kind) for kind in keyed)
        self.no_key = f"CAST(NULL AS {'BIGINT' if integer_keys else 'STRING'})"
        self.tables = [
            _Table(
                t,
                frames[t.name],
                list(frames[t.name].columns),
                q.number_sql(t.nhs_number, types[t.name][t.nhs_number], table=t.name, where=t.path)
                if t.nhs_number
                else None,
                q.key_sql(t.person_key, integer_keys) if t.person_key else None,
                np.zeros(CODE_COUNT, dtype=np.int64),
            )
            for t in spec.tables
        ]
        if check_result is not None and spec.filtered:
            self.list = staged_list(spark, check_result)
            self.hint = join.hint(len(check_result.cohort))

    def coded(self, table: _Table) -> DataFrame:
        """The table's rows with their own code (``CODE``) and key (``KEY``), joined once to the list."""
        assert table.number is not None
        frame = table.number.apply(table.frame.selectExpr("*", f"{table.key or self.no_key} AS {q.KEY}"))
        joined = frame.join(self.list.hint(self.hint), on=q.NUMBER, how="left")
        return joined.selectExpr(*(q.column(c) for c in table.columns), q.NUMBER, q.KEY, f"{q.own_code()} AS {q.CODE}")

    def learn(self) -> tuple[DataFrame, DataFrame | None, dict[str, int]]:
        """Cache each numbered table's (key, number, code); return the uncleared keys with their first
        reason, the keys seen beside a number (when a table needs them) and people removed by number."""
        numbered = [t for t in self.tables if t.number is not None]
        narrow = []
        for table in numbered:
            frame = self.coded(table).select(q.KEY, q.NUMBER, q.CODE).persist()
            narrow.append(frame)
            for code, count in frame.groupBy(q.CODE).count().collect():
                table.codes[int(code)] += int(count)
        nobody = self.spark.range(0).selectExpr(
            f"{self.no_key} AS {q.KEY}", f"CAST(NULL AS BIGINT) AS {q.NUMBER}", f"0 AS {q.CODE}"
        )
        every = _union([nobody, *narrow])
        removed = every.where(f"{q.CODE} <> {KEEP}")
        bad = (
            removed.where(f"{q.KEY} IS NOT NULL")
            .groupBy(q.KEY)
            .agg({q.CODE: "min"})
            .withColumnRenamed(f"min({q.CODE})", q.CODE)
            .localCheckpoint()
        )
        needs_known = any(t.number is None for t in self.tables)
        known = every.where(f"{q.KEY} IS NOT NULL").select(q.KEY).distinct().localCheckpoint() if needs_known else None
        people = np.zeros(CODE_COUNT, dtype=np.int64)
        firsts = removed.where(f"{q.KEY} IS NULL AND {q.NUMBER} IS NOT NULL").groupBy(q.NUMBER).agg({q.CODE: "min"})
        for source in (bad.select(q.CODE), firsts.withColumnRenamed(f"min({q.CODE})", q.CODE).select(q.CODE)):
            for code, count in source.groupBy(q.CODE).count().collect():
                people[int(code)] += int(count)
        flagged = bad.selectExpr(q.KEY, f"TRUE AS {q.BAD}")
        for table, frame in zip(numbered, narrow, strict=True):
            if table.key is not None:
                hit = frame.where(f"{q.CODE} = {KEEP}").join(flagged.hint("broadcast"), on=q.KEY, how="left_semi")
                table.codes[Reason.PERSON_REMOVED.code] = hit.count()
            table.codes[KEEP] -= table.codes[Reason.PERSON_REMOVED.code]
            table.expected_out = int(table.codes[KEEP])
            frame.unpersist()
        unseen = []
        for table in self.tables:
            if table.number is None:
                assert known is not None and table.key is not None
                decided = self.decided_keys_only(table, flagged, known)
                for code, count in decided.groupBy(q.REASON).count().collect():
                    table.codes[int(code)] += int(count)
                table.expected_out = int(table.codes[KEEP])
                unseen.append(decided.where(f"{q.REASON} = {Reason.UNCHECKED.code}").select(q.KEY))
        if unseen:
            people[Reason.UNCHECKED.code] += _union(unseen).distinct().count()
        return flagged, known, counts_by_reason(people)

    def decided_keys_only(self, table: _Table, flagged: DataFrame, known: DataFrame) -> DataFrame:
        """A key-only table's rows with their reason: no key, never seen beside a number, or uncleared."""
        frame = table.frame.selectExpr("*", f"{table.key} AS {q.KEY}")
        frame = frame.join(known.selectExpr(q.KEY, f"TRUE AS {q.KNOWN}").hint(self.hint), on=q.KEY, how="left")
        frame = frame.join(flagged.hint("broadcast"), on=q.KEY, how="left")
        reason = (
            f"CASE WHEN {q.KEY} IS NULL THEN {Reason.MISSING.code} WHEN {q.KNOWN} IS NULL THEN "
            f"{Reason.UNCHECKED.code} WHEN {q.BAD} THEN {Reason.PERSON_REMOVED.code} ELSE {KEEP} END"
        )
        return frame.selectExpr(*(q.column(c) for c in table.columns), q.KEY, f"{reason} AS {q.REASON}")

    def kept(self, table: _Table, flagged: DataFrame, known: DataFrame | None) -> DataFrame:
        """The rows of ``table`` that may be used, with only its own columns."""
        if table.number is None:
            assert known is not None
            decided = self.decided_keys_only(table, flagged, known)
            return decided.where(f"{q.REASON} = {KEEP}").select(*table.columns)
        frame = self.coded(table).where(f"{q.CODE} = {KEEP}")
        if table.key is not None:
            frame = frame.join(flagged.select(q.KEY).hint("broadcast"), on=q.KEY, how="left_anti")
        return frame.select(*table.columns)


def _union(frames: list[DataFrame]) -> DataFrame:
    united = frames[0]
    for frame in frames[1:]:
        united = united.unionByName(frame)
    return united


# ----------------------------------------------------------------------------------------- writing


class _Outputs:
    """Outputs written under temporary names, published together."""

    def __init__(self, spark: SparkSession, staging: Path, tag: str) -> None:
        self.spark = spark
        self.staging = staging
        self.tag = tag
        self._tables: list[tuple[str, str]] = []  # (temporary, final)

    def write(self, table: TableSpec, frame: DataFrame) -> DataFrame:
        """Write ``frame`` for ``table``; return the written output, read back."""
        if table.table:
            final = table.output_name
            temporary = f"{final}__optout_{self.tag}"
            self._tables.append((temporary, final))
            frame.write.mode("error").saveAsTable(q.quote(temporary))
            return self.spark.table(q.quote(temporary))
        target = str(self.staging / table.output_name)
        if table.format is Format.PARQUET:
            frame.write.mode("error").parquet(target)
        else:
            frame.write.mode("error").options(header=True, escape='"').csv(target)
        return _read_path(self.spark, target, table.format)

    def publish(self) -> None:
        for temporary, final in self._tables:
            self.spark.sql(f"DROP TABLE IF EXISTS {q.quote(final)}")
            self.spark.sql(f"ALTER TABLE {q.quote(temporary)} RENAME TO {q.quote(final)}")
        self._tables.clear()

    def discard(self) -> None:
        for temporary, _ in self._tables:
            self.spark.sql(f"DROP TABLE IF EXISTS {q.quote(temporary)}")
        self._tables.clear()


def content_hash(frame: DataFrame) -> tuple[int, str]:
    """Row count and an order-free hash of a DataFrame's content: the sha256 of ``optout-spark-content/1``,
    the row hash used, the count and the exact sum of the rows' ``xxhash64`` (see
    :func:`optout.homes.spark_sql.content_hash_sql`). Compare hashes within Spark only."""
    row = frame.selectExpr(*q.content_hash_sql(list(frame.columns))).collect()[0]
    text = f"{CONTENT_HASH_VERSION}\nxxhash64+nulls\n{int(row[0])}\n{row[1]}\n"
    return int(row[0]), hashlib.sha256(text.encode()).hexdigest()


def output_format(table: TableSpec) -> str:
    """The manifest's ``format`` of a Spark output: a Spark table, or a folder of CSV or Parquet parts."""
    return "spark-table" if table.table else f"spark-{table.format.value}"


def filter_spark(
    spec: ExtractSpec, staging: Path, check_result: CheckResultLike | None, *, spark: SparkSession
) -> tuple[list[TableReport], dict[str, int]]:
    """Filter (or, for direct care and exemptions, copy) every table of ``spec`` in Spark.

    ``path`` outputs go into ``staging`` (a folder the Spark session can write); ``table`` outputs
    replace their tables only when every table succeeded. Returns per-table reports and people removed.
    """
    if any(t.pseudonymised is not None for t in spec.tables):
        raise InputError("the Spark engine does not filter pseudonymised tables yet; use the file or SQL engine")
    if any(t.query for t in spec.tables):
        raise InputError("with engine: spark name a table or a path; query is for SQL databases")
    run = _Run(spark, spec, check_result, JoinChoice.from_env())
    outputs = _Outputs(spark, staging, run.tag)
    reports = []
    try:
        with spark_errors("filtering the extract"):
            filtering = check_result is not None and spec.filtered
            flagged, known, people = run.learn() if filtering else (None, None, no_removals())
            for table in run.tables:
                frame = run.kept(table, flagged, known) if flagged is not None else table.frame
                rows, digest = content_hash(outputs.write(table.spec, frame))
                if not filtering:
                    report = unfiltered_report(table.spec, rows, digest)
                elif rows != table.expected_out:
                    raise InputError(TABLE_CHANGED, path=table.spec.path, field=table.spec.name)
                else:
                    report = TableReport(
                        name=table.spec.name,
                        file=table.spec.output_name,
                        format="",
                        rows_in=int(table.codes.sum()),
                        rows_out=rows,
                        removed=counts_by_reason(table.codes),
                        sha256=digest,
                    )
                reports.append(_formatted(report, table.spec))
            outputs.publish()
    finally:
        with spark_errors("dropping temporary tables"):
            outputs.discard()
    return reports, people


def _formatted(report: TableReport, table: TableSpec) -> TableReport:
    from dataclasses import replace

    return replace(report, format=output_format(table))
