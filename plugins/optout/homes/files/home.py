"""The file home: an extract kept as CSV or Parquet files, outputs written into the extract folder."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from optout.clearance import CheckResultLike
from optout.errors import InputError
from optout.homes.base import ExtractHome
from optout.homes.files import engine
from optout.homes.files.read import read_batches
from optout.input_scan import InputScan
from optout.manifest import TableReport, sha256_of
from optout.spec import TableSpec


class FilesHome(ExtractHome):
    engine: ClassVar[str] = engine.ENGINE
    holds_files: ClassVar[bool] = True

    def filter(
        self, staging: Path, check_result: CheckResultLike, scan: InputScan | None = None
    ) -> tuple[list[TableReport], dict[str, int]]:
        return engine.filter_files(self.spec, staging, check_result, scan, secret=self.secret)

    def scan_inputs(self, scan: InputScan) -> None:
        """Nothing before: pass 2 of the filter reads every column and gives each batch to ``scan``."""

    def copy(self, staging: Path) -> list[TableReport]:
        return engine.copy_files(self.spec, staging)

    def hashes(self, out_dir: Path, names: Iterable[str]) -> dict[str, str | None]:
        folder = Path(out_dir)
        return {name: sha256_of(folder / name) if (folder / name).is_file() else None for name in names}

    def output_batches(
        self, out_dir: Path, table: TableSpec, columns: Sequence[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        return read_batches(Path(out_dir) / table.output_name, columns, dialect=table.csv)

    def input_batches(self, table: TableSpec, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        if table.path is None:
            raise InputError("the table's input is read again: give its path", field=f"{table.name}.path")
        return read_batches(table.path, columns, dialect=table.csv)
