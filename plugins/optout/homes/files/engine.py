"""The CSV/Parquet engine: streams each table in batches, so memory stays bounded whatever the size.

Reading runs ahead on one thread and writing (with hashing) behind on others, so the Arrow work of
both overlaps the decisions taken in between; pass 1 of the cascade examines batches on two threads.
Parquet tables keep pass 1's columns for pass 2 within a memory budget (see :class:`_Kept`). Arrow
buffers come from the system allocator meanwhile (see :func:`optout.streams.reused_memory`), unless a
table is CSV (see :func:`_allocator_for`); what it keeps freed is handed back between the passes.
"""

from __future__ import annotations

import shutil
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import wraps
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from optout import progress
from optout.atomic import OWNER_ONLY_DIR, OWNER_ONLY_FILE
from optout.cascade import TABLE_CHANGED, Cascade, columns_of, key_types, unfiltered_report
from optout.clearance import KEEP, CheckResultLike
from optout.errors import InputError
from optout.homes.files.formats import Format, format_of
from optout.homes.files.parquet_read import ParquetParts, repetitive_text_columns
from optout.homes.files.parquet_write import BatchWriter
from optout.homes.files.read import count_rows, read_batches, schema_of
from optout.input_scan import InputScan
from optout.manifest import TableReport, sha256_of
from optout.nhs_number import require_number_column
from optout.resolver import Reader
from optout.spec import ExtractSpec, TableSpec
from optout.streams import prefetch, release_freed, reused_memory

ENGINE = "arrow_files"
KEPT_BYTES = 256 << 20  # pass 1's number and key columns kept for pass 2, at most (10M rows of two int64: 160 MB)
P = ParamSpec("P")
R = TypeVar("R")


def _source(table: TableSpec) -> Path:
    if table.path is None:
        raise ValueError(f"table {table.name!r} has no path; pass it as a DataFrame")
    return table.path


def _allocator_for(run: Callable[Concatenate[ExtractSpec, P], R]) -> Callable[Concatenate[ExtractSpec, P], R]:
    """Run with Arrow's buffers from the system allocator (:func:`optout.streams.reused_memory`), unless a
    table is CSV: pyarrow's CSV reader parses ahead in waves of large buffers, which the system allocator
    keeps as fragments (10M rows: a 1.9 GiB peak, 1.3 GiB with the default pool, as fast)."""

    @wraps(run)
    def chosen(spec: ExtractSpec, *args: P.args, **kwargs: P.kwargs) -> R:
        with reused_memory(enabled=all(format_of(_source(table)) is Format.PARQUET for table in spec.tables)):
            return run(spec, *args, **kwargs)

    return chosen


@_allocator_for
def filter_files(
    spec: ExtractSpec,
    staging: Path,
    check_result: CheckResultLike,
    scan: InputScan | None = None,
    *,
    secret: Reader | None = None,
) -> tuple[list[TableReport], dict[str, int]]:
    """Filter every table of ``spec`` into ``staging``; return per-table reports and people removed.
    Pass 2 reads every column: each batch also goes to ``scan`` (the input leak scan).

    :param secret: reads a pseudonymisation key kept in a connection (see :mod:`optout.resolver`).
    """
    schemas = {table.name: schema_of(_source(table), table.csv) for table in spec.tables}
    for table in spec.tables:
        if table.nhs_number and table.pseudonymised is None and table.nhs_number in schemas[table.name].names:
            kind = schemas[table.name].field(table.nhs_number).type
            require_number_column(kind, path=table.path, column=table.nhs_number)
    cascade = Cascade(spec, check_result, key_types(spec, schemas), secret=secret)
    kept = _Kept(spec)
    cascade.learn_all(lambda table: prefetch(kept.pass_one(table)))
    release_freed()  # pass 1's temporaries, before pass 2's reading and writing peak
    hashes = {}
    for table in spec.tables:
        with (
            progress.stage(f"filter {table.name}"),
            BatchWriter(
                _target(staging, table), schemas[table.name], like=kept.settings_of(table), dialect=table.csv
            ) as writer,
        ):
            for batch in prefetch(kept.pass_two(table)):
                if scan is not None:
                    scan.batch(table.name, batch)
                writer.write(batch, cascade.codes(table, batch) == KEEP)
                progress.advance(batch.num_rows, batch.nbytes)
        hashes[table.name] = writer.sha256
    reports = [replace(report, sha256=hashes[report.name]) for report in cascade.reports()]
    return reports, cascade.people_removed()


class _Kept:
    """Pass 1's number and key columns of Parquet tables, kept for pass 2 while they fit in a budget.

    Those columns are the costliest to decode (near-unique numbers and keys); kept, pass 2 decodes only
    a table's other columns and puts the kept ones beside them, batch by batch. Kept parts are let go as
    pass 2 uses them, and a part is kept only when its estimated size still fits, so memory stays
    bounded whatever the size: beyond the budget, pass 2 reads every column as before. CSV is read
    whole either way (the parser reads every column), so nothing of it is kept.
    """

    def __init__(self, spec: ExtractSpec) -> None:
        self._room = KEPT_BYTES
        self._parts: dict[str, ParquetParts] = {}
        for table in spec.tables:
            source = _source(table)
            if format_of(source) is Format.PARQUET:
                text = repetitive_text_columns(source, exclude=columns_of(table))
                self._parts[table.name] = ParquetParts(source, as_dictionary=text)
        self._kept: dict[tuple[str, int], list[pa.RecordBatch]] = {}

    def settings_of(self, table: TableSpec) -> Path | pq.FileMetaData:
        """What the output copies its settings from: the footer both passes read, for Parquet tables."""
        parts = self._parts.get(table.name)
        return parts.metadata if parts is not None else _source(table)

    def pass_one(self, table: TableSpec) -> Iterator[pa.RecordBatch]:
        """The number and key columns of ``table``, keeping the parts that fit."""
        columns = columns_of(table)
        parts = self._parts.get(table.name)
        if parts is None:
            yield from read_batches(_source(table), columns=columns, dialect=table.csv)
            return
        estimate = max(parts.bytes_per_row(columns), 8.0 * len(columns))
        for part in range(len(parts.parts)):
            keep: list[pa.RecordBatch] | None = [] if parts.rows_in(part) * estimate <= self._room else None
            for batch in parts.read(part, columns):
                if keep is not None:
                    keep.append(batch)
                    self._room -= batch.nbytes
                yield batch
            if keep is not None:
                self._kept[table.name, part] = keep

    def pass_two(self, table: TableSpec) -> Iterator[pa.RecordBatch]:
        """Every column of ``table``, repetitive text as dictionaries, in the source's column order."""
        parts = self._parts.get(table.name)
        if parts is None:
            yield from read_batches(_source(table), dialect=table.csv)
            return
        others = [name for name in parts.schema.names if name not in columns_of(table)]
        for part in range(len(parts.parts)):
            kept = self._kept.pop((table.name, part), None)
            if kept is None:
                yield from parts.read(part)
            elif not others:  # pass 1 read the declared columns in its own order: put back the source's
                yield from (_joined(parts.schema.names, batch) for batch in kept)
            else:
                yield from _side_by_side(table, parts.schema.names, kept, parts.read(part, others))


def _side_by_side(
    table: TableSpec, names: list[str], kept: list[pa.RecordBatch], read: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """Kept batches beside freshly read ones of the same rows, in the source's column order.

    Batches of the two reads usually match; where they do not, both are cut (without copying) so the
    rows still line up. A row count that differs means the file is not the one pass 1 read.
    """
    pending = deque(kept)
    kept.clear()  # each kept batch is let go once written
    for batch in read:
        start = 0
        while start < batch.num_rows:
            if not pending:
                raise InputError(TABLE_CHANGED, path=table.path)
            own = pending.popleft()
            rows = min(own.num_rows, batch.num_rows - start)
            if rows < own.num_rows:
                pending.appendleft(own.slice(rows))
            yield _joined(names, batch.slice(start, rows), own.slice(0, rows))
            start += rows
    if pending:
        raise InputError(TABLE_CHANGED, path=table.path)


def _joined(names: list[str], *batches: pa.RecordBatch) -> pa.RecordBatch:
    fields = {field.name: (field, batch.column(field.name)) for batch in batches for field in batch.schema}
    ordered = [fields[name] for name in names]
    return pa.RecordBatch.from_arrays([column for _, column in ordered], schema=pa.schema([f for f, _ in ordered]))


def copy_files(spec: ExtractSpec, staging: Path) -> list[TableReport]:
    """Copy every table byte for byte (direct care, exemptions), counting rows but removing none."""
    reports = []
    for table in spec.tables:
        target = _target(staging, table)
        shutil.copyfile(_source(table), target)
        target.chmod(OWNER_ONLY_FILE)
        reports.append(unfiltered_report(table, count_rows(target, table.csv), sha256_of(target)))
    return reports


def _target(staging: Path, table: TableSpec) -> Path:
    target = staging / table.output_name
    target.parent.mkdir(parents=True, exist_ok=True, mode=OWNER_ONLY_DIR)
    return target
