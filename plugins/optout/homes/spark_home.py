"""The Spark home: an extract whose tables are Spark tables or paths Spark reads (``engine: spark``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from optout.homes.base import ExtractHome
from optout.homes.spark import filter_spark
from optout.homes.spark_session import ENGINE, content_hash, read_output, read_table, session, spark_errors

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from optout.clearance import CheckResultLike
    from optout.homes.sql.run import TableMeasure
    from optout.input_scan import InputScan
    from optout.manifest import TableReport
    from optout.resolver import Reader
    from optout.spec import ExtractSpec, TableSpec


_PROVED_IN_SPARK = "a Spark table's rows are not brought to the driver; it is proved in Spark"


class SparkHome(ExtractHome):
    """Filtered in Spark; outputs are folders of parts in the extract folder (``path`` tables) or Spark
    tables (``table`` tables), hashed by content in Spark.

    :param connection: an ``sc://`` URL (already resolved from an Airflow connection id), or None for a
        local session.
    :param secret: reads a pseudonymisation key kept in a connection (see :mod:`optout.resolver`).
    """

    engine: ClassVar[str] = ENGINE
    holds_files: ClassVar[bool] = False  # the folder's outputs are folders or tables, hashed in Spark

    def __init__(
        self, spec: ExtractSpec | None, connection: str | None = None, *, secret: Reader | None = None
    ) -> None:
        super().__init__(spec, secret=secret)
        self._connection = connection
        self._session: SparkSession | None = None

    @classmethod
    def for_outputs(cls, database: Any = None) -> SparkHome:
        return cls(None, database)

    @property
    def spark(self) -> SparkSession:
        if self._session is None:
            self._session = session(self._connection)
        return self._session

    def filter(
        self, staging: Path, check_result: CheckResultLike, scan: InputScan | None = None
    ) -> tuple[list[TableReport], dict[str, int]]:
        return filter_spark(self.spec, staging, check_result, spark=self.spark, scan=scan, secret=self.secret)

    def scan_inputs(self, scan: InputScan) -> None:
        """Nothing here: the filter scans every input in Spark, tables and paths alike, once the list is
        staged and before it writes anything (:meth:`optout.homes.spark.SparkRun.scan_inputs`)."""

    def copy(self, staging: Path) -> list[TableReport]:
        return filter_spark(self.spec, staging, None, spark=self.spark)[0]

    def hashes(self, out_dir: Path, names: Iterable[str]) -> dict[str, str | None]:
        """Content hashes of the named outputs (folders in ``out_dir``, else Spark tables), in Spark."""
        found: dict[str, str | None] = {}
        with spark_errors("hashing the outputs"):
            for name in names:
                folder = Path(out_dir) / name
                if folder.is_dir():
                    found[name] = content_hash(read_output(self.spark, str(folder)))[1]
                elif self.spark.catalog.tableExists(name):
                    found[name] = content_hash(self.spark.table(name))[1]
                else:
                    found[name] = None
        return found

    def measure_in_place(self, out_dir: Path, check_result: CheckResultLike | None) -> list[TableMeasure]:
        """Each output's counts, content hash and leaks per column, computed in Spark
        (:func:`optout.homes.spark_proof.measure_spark`): no row reaches the driver."""
        from optout.homes.spark_proof import measure_spark

        return measure_spark(self.spark, self.spec, out_dir, check_result, self.secret)

    def output_batches(
        self, out_dir: Path, table: TableSpec, columns: Sequence[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """A folder output's parts, read here with Arrow (the folder is on this machine). A Spark table's
        rows are never brought to the driver (the proof runs in Spark: :meth:`measure_in_place`)."""
        from optout.errors import InputError
        from optout.homes.spark_session import output_parts

        if table.in_database:
            raise InputError(_PROVED_IN_SPARK, field=table.name)
        yield from output_parts(Path(out_dir) / table.output_name, table.format, columns)

    def input_batches(self, table: TableSpec, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        from optout.errors import InputError

        if table.in_database:
            raise InputError(_PROVED_IN_SPARK, field=table.name)
        with spark_errors("reading the inputs"):
            frame = read_table(self.spark, table)
            if columns is not None:
                frame = frame.select(*columns)
            yield from frame.toArrow().to_batches()
