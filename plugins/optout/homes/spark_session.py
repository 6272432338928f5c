"""The Spark engine's session and staging: connecting, failing closed on Spark's errors, the join setting,
the opt-out list staged once per version, reading tables and paths, and content hashes.

What the filter job (:mod:`optout.homes.spark`) and the proof (:mod:`optout.homes.spark_proof`) share.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from optout.errors import InputError, OptOutError
from optout.homes import spark_sql as q
from optout.homes.files.csv_dialect import DEFAULT, CsvDialect
from optout.homes.files.formats import Format
from optout.homes.spark_csv import folder_dialect, read_csv, read_errors, spark_encoding

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from optout.pseudonym import Key
    from optout.spec import TableSpec

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
    """Spark's errors as :class:`SparkEngineError`, named by class (their messages may quote data): Spark
    Connect's and a classic session's alike (py4j's, whose text quotes the Java error's)."""
    caught: tuple[type[BaseException], ...] = (*read_errors(), OSError)
    try:
        yield
    except caught as exc:
        condition = _condition(exc)
        text = f"{type(exc).__name__} {condition} {_message(exc)}".lower()
        if any(word in text for word in _OUT_OF_MEMORY):
            raise SparkEngineError(
                f"Spark ran out of memory broadcasting the opt-out list while {step} ({condition}); nothing was "
                f"written. Set {JOIN_ENV}=shuffle (or lower {BROADCAST_ROWS_ENV}), or give the driver more memory"
            ) from None
        raise SparkEngineError(
            f"Spark refused {step} ({type(exc).__name__}: {condition}); nothing was written. Check that the "
            "tables and paths exist and are readable, and that the session may create tables"
        ) from None


def _message(exc: BaseException) -> str:
    """The error's text, only to recognise it (never shown): a py4j error asks the JVM, which may be gone."""
    try:
        return str(exc)
    except Exception:
        return ""


def _condition(exc: BaseException) -> str:
    """Spark's error class, or the Java exception's class for a py4j error (never a message)."""
    java = getattr(exc, "java_exception", None)
    if java is not None:
        try:
            return str(java.getClass().getName())
        except Exception:  # the JVM may be gone
            return "no error class"
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
    half-written or damaged copy is written again). Under consent (an :class:`optout.exemptions.ExemptView`
    naming a consented list) ``CONSENTED`` marks the consented people the list alone would remove, so that
    the rows kept by consent are counted in Spark."""
    cohort = np.asarray(check_result.cohort, dtype=np.int64)
    cleared = np.asarray(check_result.cleared, dtype=np.int64)
    flags = {q.CLEARED: np.isin(cohort, cleared, assume_unique=True)}
    if getattr(check_result, "consents", False):
        consented = np.asarray(check_result.consent_only, dtype=np.int64)
        flags[q.CONSENTED] = np.isin(cohort, consented, assume_unique=True)
    return _staged(spark, check_result, _Content(q.NUMBER, pa.array(cohort), q.NUMBER, cohort, flags))


def staged_hashes(spark: SparkSession, check_result: Any, key: Key) -> DataFrame:
    """The cohort hashed with a pseudonymised table's key (:func:`optout.pseudonym.hashed_cohort`, itself
    kept per version and key) as Parquet in Spark (``HASH``: 64 lowercase hex digits, ``CLEARED``), staged
    once per version and key as :func:`staged_list` stages the numbers. The key stays on the driver; the
    digests cross to Spark once, the first time a version meets the key."""
    from optout.pseudonym import hashed_cohort, hex_digests

    cohort = hashed_cohort(check_result, key)
    values = (np.ascontiguousarray(cohort.digests[:, :8]).view(">u8").ravel() >> 8).astype(np.int64)
    flags = {q.CLEARED: np.asarray(cohort.cleared, dtype=bool)}
    content = _Content(q.HASH, hex_digests(cohort.digests), q.hash_value(q.HASH), values, flags)
    return _staged(spark, check_result, content)


@dataclass(frozen=True)
class _Content:
    """What one staged list holds: the column joined on, and how a staged copy is checked (``values``:
    what ``value_sql`` reads back from each row, summed in all and per flag)."""

    name: str
    column: pa.Array
    value_sql: str
    values: np.ndarray  # int64
    flags: dict[str, np.ndarray]  # BOOLEAN columns beside it

    def sums(self) -> tuple[int, ...]:
        found = [len(self.values), _exact_sum(self.values)]
        for flag in self.flags.values():
            found += [int(flag.sum()), _exact_sum(self.values[flag])]
        return tuple(found)

    def label(self) -> str:
        """A digest of the content: another list (or key) is staged beside, never over, this one."""
        digest = hashlib.sha256(self.name.encode())
        for part in (self.values, *self.flags.values()):
            digest.update(np.ascontiguousarray(part).tobytes())
        return digest.hexdigest()[:12]


def _staged(spark: SparkSession, check_result: Any, content: _Content) -> DataFrame:
    """``content`` as Parquet under :func:`list_location`, named by the version and the content's label;
    written when missing, and checked by its sums before every use."""
    expected = content.sums()
    path = f"{list_location().rstrip('/')}/v{int(check_result.info.id)}_{content.label()}"
    with spark_errors("staging the opt-out list"):
        if _staged_sums(spark, path, content) == expected:
            return spark.read.parquet(path)
        frame = spark.createDataFrame(pa.table({content.name: content.column, **content.flags}))
        frame.write.mode("overwrite").parquet(path)
        if _staged_sums(spark, path, content) != expected:
            raise SparkEngineError("the opt-out list staged in Spark does not match the version; nothing was written")
        return spark.read.parquet(path)


def _exact_sum(values: np.ndarray) -> int:
    """The sum of int64 values below 2**56 without overflow (two sums of 28-bit halves)."""
    return (int((values >> 28).sum()) << 28) + int((values & ((1 << 28) - 1)).sum())


def list_location() -> str:
    """Where staged lists live: ``OPTOUT_SPARK_LISTS`` (a path every Spark executor can read, such as
    ``abfss://...`` or ``dbfs:/...``), else ``spark-lists`` in the data folder (a local or loopback session)."""
    from optout import config

    return os.environ.get(LISTS_ENV, "").strip() or str(config.data_dir() / "spark-lists")


def _staged_sums(spark: SparkSession, path: str, content: _Content) -> tuple[int, ...] | None:
    try:
        frame = spark.read.parquet(path)
        if set(frame.columns) != {content.name, *content.flags}:
            return None
        return _list_sums(frame, content)
    except read_errors():  # not there yet, or no complete file
        return None


def _list_sums(frame: DataFrame, content: _Content) -> tuple[int, ...]:
    def total(value: str) -> str:
        return f"CAST(coalesce(sum(CAST({value} AS DECIMAL(38, 0))), 0) AS STRING)"

    sums = ["count(*)", total(content.value_sql)]
    for flag in content.flags:
        sums += [f"count_if({flag})", total(f"CASE WHEN {flag} THEN {content.value_sql} END")]
    return tuple(int(value) for value in frame.selectExpr(*sums).collect()[0])


# ----------------------------------------------------------------------------------------- reading


def read_table(spark: SparkSession, table: TableSpec) -> DataFrame:
    """A spec table as a DataFrame: a Spark table, a Spark SQL query's result, or a CSV/Parquet file or
    folder Spark reads. A query is run as a subquery, so only a query parses (never a command)."""
    if table.table:
        return spark.table(q.quote(table.table))
    if table.query:
        try:
            return spark.sql(f"SELECT * FROM ({table.query}) AS __optout_query")
        except read_errors() as exc:
            raise InputError(
                f"the Spark SQL query does not run ({_condition(exc)})", field=f"{table.name}.query"
            ) from None
    assert table.path is not None
    return read_path(spark, str(table.path), table.format, table.csv)


def read_output(spark: SparkSession, folder: str) -> DataFrame:
    """A folder output as Spark wrote it (its format from its name, a CSV folder's dialect from its record)."""
    if folder.endswith(".parquet"):
        return read_path(spark, folder, Format.PARQUET)
    return read_path(spark, folder, Format.CSV, folder_dialect(Path(folder)))


def output_parts(folder: Path, kind: Format, columns: Sequence[str] | None) -> Iterator[pa.RecordBatch]:
    """A folder output's part files as Arrow batches (CSV parts: every column as text)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    dialect = folder_dialect(folder)
    parse = pacsv.ParseOptions(delimiter=dialect.delimiter, newlines_in_values=True)
    encoding = spark_encoding(dialect).lower()  # Arrow reads the bytes as Spark wrote them
    for part in sorted(folder.glob("part-*")):
        if kind is Format.PARQUET:
            yield from pq.ParquetFile(part).iter_batches(columns=list(columns) if columns else None)
            continue
        read = pacsv.read_csv(part, read_options=pacsv.ReadOptions(encoding=encoding), parse_options=parse)
        read = read.cast(pa.schema([(name, pa.string()) for name in read.column_names]))
        yield from (read.select(list(columns)) if columns else read).to_batches()


def read_path(spark: SparkSession, path: str, kind: Format, dialect: CsvDialect = DEFAULT) -> DataFrame:
    """A CSV or Parquet file or folder as Spark reads it (CSV: in ``dialect``, every column as text)."""
    if kind is Format.PARQUET:
        return spark.read.parquet(path)
    return read_csv(spark, path, dialect)


def content_hash(frame: DataFrame) -> tuple[int, str]:
    """Row count and an order-free hash of a DataFrame's content: the sha256 of ``optout-spark-content/1``,
    the row hash used, the count and the exact sum of the rows' ``xxhash64`` (see
    :func:`optout.homes.spark_sql.content_hash_sql`). Compare hashes within Spark only."""
    return content_hashes([frame])[0]


def content_hashes(frames: Sequence[DataFrame]) -> list[tuple[int, str]]:
    """:func:`content_hash` of each frame, all in one job (one aggregation over their union, each row
    tagged with its frame's position): one scheduling and one read of each, however many outputs."""
    if not frames:
        return []
    tagged = [
        frame.selectExpr(f"{index} AS {q.TABLE}", f"{q.row_hash_sql(list(frame.columns))} AS {q.ROW_HASH}")
        for index, frame in enumerate(frames)
    ]
    figures = union(tagged).selectExpr(
        *(
            part
            for index in range(len(frames))
            for part in (
                f"count_if({q.TABLE} = {index})",
                *q.hash_total_sql(f"CASE WHEN {q.TABLE} = {index} THEN {q.ROW_HASH} END"),
            )
        )
    )
    row = figures.collect()[0]
    found = (row[3 * index : 3 * index + 3] for index in range(len(frames)))
    return [(int(rows), digest(int(rows), high, low)) for rows, high, low in found]


def union(frames: Sequence[DataFrame]) -> DataFrame:
    """The frames' rows together, columns matched by name."""
    united = frames[0]
    for frame in frames[1:]:
        united = united.unionByName(frame)
    return united


def digest(rows: int, high: int, low: int) -> str:
    """The content hash from the aggregates :func:`optout.homes.spark_sql.content_hash_sql` names: the
    exact sum of the row hashes is ``high * 2^32 + low``."""
    total = int(high) * (1 << 32) + int(low)
    text = f"{CONTENT_HASH_VERSION}\nxxhash64+nulls\n{rows}\n{total}\n"
    return hashlib.sha256(text.encode()).hexdigest()
