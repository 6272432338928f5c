"""The pandas engine: the same rules over DataFrames held in memory (notebooks, small extracts).

Each frame's number and key columns go through the same :class:`Cascade` as files do; rows are then
selected from the original frame, so its dtypes and index stay exactly as they were.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from optout.cascade import Cascade, columns_of, key_types, require_check, unfiltered_report
from optout.clearance import KEEP, CheckResultLike, no_removals
from optout.errors import InputError
from optout.homes.base import ExtractHome
from optout.homes.files.formats import BATCH_ROWS
from optout.homes.files.home import FilesHome
from optout.homes.files.parquet_write import write_table
from optout.input_scan import InputScan
from optout.manifest import Manifest, TableReport, new_manifest
from optout.nhs_number import names_for_message, require_number_column
from optout.resolver import Reader
from optout.spec import ExtractSpec, TableSpec

ENGINE = "frames"


def filter_frames(
    spec: ExtractSpec,
    frames: dict[str, pd.DataFrame],
    check_result: CheckResultLike | None,
    *,
    secret: Reader | None = None,
) -> tuple[dict[str, pd.DataFrame], Manifest]:
    """Filter one DataFrame per table of ``spec`` (keyed by table name); return the kept rows and the manifest.

    ``direct_care`` and ``exempt`` extracts come back as unfiltered copies (``check_result`` may be None).
    """
    require_check(spec, check_result)
    for table in spec.tables:
        if table.name not in frames:
            raise InputError(f"no DataFrame for table {table.name!r}", field=table.name)
        _require_unique_columns(table.name, frames[table.name])
    if check_result is None or not spec.filtered:
        copies = {table.name: frames[table.name].copy() for table in spec.tables}
        reports = [unfiltered_report(table, len(copies[table.name]), None) for table in spec.tables]
        manifest = new_manifest(spec, check_result, engine=ENGINE, tables=reports, people_removed=no_removals())
        return copies, manifest
    batches = {table.name: _batches(frames[table.name], columns_of(table)) for table in spec.tables}
    schemas = {name: _schema(frames[name], found) for name, found in batches.items()}
    for table in spec.tables:
        if table.nhs_number and table.pseudonymised is None:
            kind = schemas[table.name].field(table.nhs_number).type
            require_number_column(kind, path=None, column=f"{table.name}.{table.nhs_number}")
    cascade = Cascade(spec, check_result, key_types(spec, schemas), secret=secret)
    cascade.learn_all(lambda table: batches[table.name])
    kept = {}
    for table in spec.tables:
        codes = [cascade.codes(table, batch) for batch in batches[table.name]]
        keep = np.concatenate(codes) == KEEP if codes else np.zeros(0, dtype=bool)
        kept[table.name] = _without_unused_categories(frames[table.name][keep])
    manifest = new_manifest(
        spec, check_result, engine=ENGINE, tables=cascade.reports(), people_removed=cascade.people_removed()
    )
    return kept, manifest


def _require_unique_columns(name: str, frame: pd.DataFrame) -> None:
    if frame.columns.duplicated().any():
        raise InputError("the DataFrame names a column twice; give each column its own name", field=name)


def _without_unused_categories(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop the categories only removed rows used: a categorical keeps every category it ever had, and
    those of opted-out people (their numbers, as text) would go out with the kept rows."""
    categorical = [name for name, dtype in frame.dtypes.items() if isinstance(dtype, pd.CategoricalDtype)]
    if categorical:
        frame = frame.assign(**{str(name): frame[name].cat.remove_unused_categories() for name in categorical})
    if isinstance(frame.index, pd.CategoricalIndex):
        frame.index = frame.index.remove_unused_categories()
    return frame


def _arrow_table(name: str, frame: pd.DataFrame) -> pa.Table:
    """The kept rows as Arrow, index included (a DataFrame's kept rows keep their labels); a column that
    Parquet cannot hold (an object column mixing numbers and text) is named, never its values."""
    try:
        return pa.Table.from_pandas(frame)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
        for column in frame.columns:
            try:
                pa.Array.from_pandas(frame[column])
            except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
                raise InputError(
                    "the column mixes types (such as numbers and text): Parquet holds one type per column; "
                    "convert it first (for example with astype(str))",
                    field=f"{name}.{column}",
                ) from None
        raise InputError("the DataFrame cannot be written as Parquet; check its index", field=name) from None


def _schema(frame: pd.DataFrame, batches: list[pa.RecordBatch]) -> pa.Schema:
    if batches:
        return batches[0].schema
    return pa.schema([(str(name), pa.string()) for name in frame.columns])


def _batches(frame: pd.DataFrame, columns: list[str]) -> list[pa.RecordBatch]:
    """The number and key columns as Arrow batches (mixed-type object columns become text)."""
    for column in columns:
        if column not in frame.columns:
            raise InputError(
                f"no column {column!r}; the DataFrame has: {names_for_message(map(str, frame.columns))}", field=column
            )
    return [
        pa.RecordBatch.from_arrays([_arrow(part[column]) for column in columns], names=columns)
        for part in (frame.iloc[start : start + BATCH_ROWS] for start in range(0, len(frame), BATCH_ROWS))
    ]


def _arrow(series: pd.Series) -> pa.Array:
    try:
        return pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if pd.isna(value) else str(value) for value in series], type=pa.string())


class FramesHome(FilesHome):
    """pandas DataFrames in memory (one per table, by name): filtered here, written out as the files the
    spec names, so the proof and the gate read them as any file extract."""

    engine: ClassVar[str] = ENGINE

    def __init__(self, spec: ExtractSpec, frames: dict[str, pd.DataFrame], *, secret: Reader | None = None) -> None:
        super().__init__(spec, secret=secret)
        for name, frame in frames.items():  # before anything reads them (the input scan included)
            _require_unique_columns(name, frame)
        self.frames = frames

    def filter(
        self, staging: Path, check_result: CheckResultLike, scan: InputScan | None = None
    ) -> tuple[list[TableReport], dict[str, int]]:
        return self._write(staging, check_result)

    def copy(self, staging: Path) -> list[TableReport]:
        return self._write(staging, None)[0]

    # The frames are filtered by their declared columns only: every column is scanned before, in memory.
    scan_inputs = ExtractHome.scan_inputs

    def _write(self, staging: Path, check_result: CheckResultLike | None) -> tuple[list[TableReport], dict[str, int]]:
        kept, manifest = filter_frames(self.spec, self.frames, check_result, secret=self.secret)
        tables = []
        for report in manifest.tables:
            target = staging / report.file
            target.parent.mkdir(parents=True, exist_ok=True)
            table = _arrow_table(report.name, kept[report.name])
            tables.append(replace(report, sha256=write_table(target, table)))
        return tables, dict(manifest.people_removed)

    def input_batches(self, table: TableSpec, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        frame = self.frames[table.name]
        names = [str(name) for name in frame.columns] if columns is None else list(columns)
        return iter(_batches(frame, names))
