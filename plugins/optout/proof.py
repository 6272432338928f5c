"""The one proof: a written extract holds nobody it may not hold, and is what its manifest says.

Every home (files, frames, database tables, Spark) is proved here, by the same code, and reduced to one
row of counts per table; :mod:`optout.validation` hands those rows to Great Expectations (and so
``optout verify``, the validate operator and, through the record of a validation, the gate). The rows:

- ``rows``, ``uncleared_number_rows`` (the declared number column: not valid and cleared),
  ``removed_person_rows`` (keys of people learnt again from the inputs, independently of the filter's
  cascade: :mod:`optout.proof_people`), ``rows_mismatch`` and ``hash_ok`` (the manifest reconciles),
  ``tables_mismatch``, ``unexpected_files``;
- ``leaked_values`` and ``unscannable_columns``: the independent every-cell scan
  (:mod:`optout.leak_scan`), which shares neither the filter's reader nor its idea of which columns hold
  numbers (decision 0006); a Parquet or database output's column names (nested fields too) and a Parquet
  output's key-value metadata are scanned as text as well, reported as the column ``(schema)``;
- ``schema_changed``: an output's column names, order and types are not its input's;
- the freshness flags: the list was fresh when the filter ran, is the version used, and is still current.

Beside the rows, the people the outputs hold (:mod:`optout.headcount`), counted from the same batches,
for the data uses register; not for GX: it proves nothing.

Each output is read once where it can be: a Parquet output's batches (every column, read by the scan's
own reader) feed both the scan and the counts. A CSV output is read by the filter's reader for the
counts and, apart, as raw bytes and a lenient parse by the scan (a quoting trick must not hide rows
from both). Outputs kept elsewhere are measured where they live (``measure_in_place``) and streamed
once for the scan. Only counts and names leave this module, never a value from the data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from optout import progress
from optout.clearance import KEEP, CheckResultLike
from optout.errors import InputError, VerificationFailed
from optout.freshness import is_fresh
from optout.headcount import Headcount
from optout.homes import home_of
from optout.homes.files.formats import Format, format_of, require_columns
from optout.homes.files.parquet_read import open_parquet
from optout.homes.files.read import count_rows, read_batches, schema_of
from optout.input_scan import column_label, excluded_columns
from optout.leak_scan import LeakScan, WholeCells, parquet_batches
from optout.manifest import MANIFEST_NAME, Manifest, TableReport, sha256_of
from optout.proof_people import People
from optout.streams import map_ahead, prefetch, reused_memory

if TYPE_CHECKING:
    from optout.homes.base import ExtractHome
    from optout.homes.sql.run import TableMeasure
    from optout.resolver import Reader, Resolver
    from optout.spec import ExtractSpec, TableSpec


SCHEMA = "(schema)"  # the column under which names and metadata of an output's schema are reported


@dataclass(frozen=True)
class Proof:
    """What the proof measured: counts for GX, and where the scan found numbers, for people."""

    rows: list[dict[str, Any]]  # one row of counts and flags per table, spec order: all GX ever sees
    found_at: list[str]  # "table.column: how many" (never a value), or that a column cannot be scanned
    tables_scanned: int  # tables scanned cell by cell
    # Distinct people in the outputs (:mod:`optout.headcount`); None when unknown (an extract copied unfiltered
    # and measured in place: its outputs are not streamed). Meaningful only if the proof passes.
    people: int | None = None


def prove(
    home: ExtractHome,
    out_dir: Path,
    manifest: Manifest,
    check_result: CheckResultLike | None,
    *,
    current: Any,
    now: datetime,
    max_age: timedelta,
) -> Proof:
    """Measure the extract in ``out_dir`` that ``home`` wrote, against its manifest and the version used.

    :param check_result: the version the filter used; None only for an extract copied unfiltered.
    :param current: the store's current ``VersionInfo`` (or None: nothing is current).
    """
    if manifest.filtered and check_result is None:
        raise InputError("a filtered extract is validated against the version it used; load it", field="check_result")
    used = check_result if manifest.filtered else None
    listed = {table.file for table in manifest.tables} | {MANIFEST_NAME}
    unexpected = sum(1 for p in out_dir.iterdir() if p.name not in listed)
    in_place = home.measure_in_place(out_dir, used)
    headcount = Headcount()
    if in_place is not None:
        rows, scans = _measured_in_place(home, out_dir, manifest, used, in_place, unexpected, headcount)
    else:
        rows, scans = _read_files(home.spec, out_dir, manifest, used, unexpected, home.secret, headcount)
    flags = freshness(manifest, check_result, current, now, max_age)
    found_at = [
        f"{table}.{_label(leak.column)}: {'cannot be scanned' if leak.unscannable else leak.values}"
        for table, scan in scans.items()
        for leak in scan.leaks()
    ]
    return Proof([{**row, **flags} for row in rows], found_at, len(scans), headcount.total())


def freshness(
    manifest: Manifest, check_result: CheckResultLike | None, current: Any, now: datetime, max_age: timedelta
) -> dict[str, bool]:
    """The list was fresh when the filter ran, is the version the manifest names, and is current now."""
    if not manifest.filtered:
        return {"list_fresh_at_filter": True, "list_is_current": True, "version_matches": True}
    used = check_result.info if check_result is not None else None
    return {
        "list_fresh_at_filter": used is not None and is_fresh(used, max_age, manifest.filtered_at),
        "list_is_current": current is not None
        and current.id == manifest.version_id
        and current.is_fresh(max_age=max_age, now=now),
        "version_matches": used is not None and used.id == manifest.version_id,
    }


def require_tables_unchanged(
    manifest: Manifest,
    connection: str | None,
    names: Iterable[str] | None = None,
    *,
    resolver: Resolver | None = None,
    out_dir: Path = Path(),
) -> set[str]:
    """Each output table the manifest lists (or those of ``names``) must hold what the manifest hashed:
    the database side of re-hashing files. Returns the tables checked (none for a file extract).

    :param connection: the spec's (``ExtractSpec.outputs_connection``); for a Spark extract its Spark
        Connect URL or connection id, None for a local session.
    :param resolver: reads ``connection`` when it is a connection id (default: URLs only).
    :param out_dir: the extract's folder (a Spark extract's folder outputs are there).
    :raises VerificationFailed: a table changed or is missing, or no connection was given to reach them.
    """
    from optout.resolver import OUTSIDE_AIRFLOW

    resolver = resolver or OUTSIDE_AIRFLOW
    if manifest.engine == "spark":  # a local session needs no connection
        home = home_of(manifest, database=resolver.spark_url(connection))
    else:
        home = home_of(manifest, database=resolver.database_url(connection) if connection is not None else None)
    if home.holds_files:
        return set()
    if connection is None and manifest.engine != "spark":
        raise VerificationFailed(
            f"extract {manifest.spec_name!r} is held in database tables: give the spec's connection so they can "
            "be hashed again before sending"
        )
    listed = {table.file: table.sha256 for table in manifest.tables}
    wanted = set(listed) if names is None else set(names)
    if not wanted:
        return wanted
    now = home.hashes(out_dir, wanted)
    for name in sorted(wanted):
        if now.get(name) is None:
            raise VerificationFailed(f"table {name!r} is missing: filter and validate again")
        if now[name] != listed.get(name):
            raise VerificationFailed(
                f"table {name!r} changed after the filter wrote its manifest: nothing was sent; "
                "filter and validate again"
            )
    return wanted


def _read_files(
    spec: ExtractSpec,
    out_dir: Path,
    manifest: Manifest,
    used: CheckResultLike | None,
    unexpected: int,
    secret: Reader | None,
    headcount: Headcount,
) -> tuple[list[dict[str, Any]], dict[str, LeakScan]]:
    """Outputs that are files in ``out_dir``: each hashed on one thread while it is read and counted (and
    a CSV output scanned on another); hashlib and Arrow release the GIL."""
    present = [t for t in spec.tables if (out_dir / t.output_name).is_file()]
    scans = {t.name: _new_scan(spec, used) for t in present} if used is not None else {}
    with (
        reused_memory(),
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="optout-hash") as hashing,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="optout-scan") as scanning,
    ):
        hashes = {t.name: hashing.submit(sha256_of, out_dir / t.output_name) for t in present}
        side_scans: list[Future[None]] = [
            scanning.submit(_scan_text_file, scans[t.name], t, out_dir / t.output_name)
            for t in present
            if t.name in scans and format_of(out_dir / t.output_name) is not Format.PARQUET
        ]
        people = People(spec, used, secret) if used is not None else None
        rows = []
        with progress.stage(f"proof {spec.name}", total_rows=manifest.rows_out):
            for table in spec.tables:
                row = _counts_row(table, manifest, unexpected, len(spec.tables))
                rows.append(row)
                report = _report(manifest, table, row, table.name in hashes)
                if report is None:
                    continue
                path = out_dir / table.output_name
                _count_file(table, path, people, scans.get(table.name), row, headcount)
                rows_in = (
                    count_rows(table.path, table.csv)
                    if table.path is not None and table.path.is_file()
                    else report.rows_in
                )
                row["rows_mismatch"] = _rows_mismatch(row["rows"], rows_in, report)
                row["hash_ok"] = report.sha256 is not None and hashes[table.name].result() == report.sha256
                if used is not None and table.path is not None and table.path.is_file():
                    row["schema_changed"] = int(
                        not _same_schema(schema_of(table.path, table.csv), schema_of(path, table.csv))
                    )
        for future in side_scans:
            future.result()
    for row in rows:
        if row["table"] in scans:
            _add_scan(row, scans[row["table"]])
    return rows, scans


def _new_scan(spec: ExtractSpec, used: CheckResultLike) -> LeakScan:
    """The every-cell scan of one output against the cleared set of the version used; only the columns the
    spec excludes by name, with a reason, are skipped."""
    return LeakScan(used.cleared_set, excluded=excluded_columns(spec))


def _scan_schema(scan: LeakScan, table: str, schema: pa.Schema) -> None:
    """A schema's names (nested fields too) and key-value metadata, scanned as text: a column named with a
    number, or a note in the footer, carries it out as surely as a cell. (A CSV header is in its bytes.)"""
    texts = [_text(key) + " " + _text(value) for key, value in (schema.metadata or {}).items()]
    fields = list(schema)
    while fields:
        field = fields.pop()
        texts.append(field.name)
        texts.extend(_text(key) + " " + _text(value) for key, value in (field.metadata or {}).items())
        fields.extend(field.type.field(index) for index in range(field.type.num_fields))
    scan.batch(table, pa.record_batch([pa.array(texts, pa.large_string())], names=[SCHEMA]))


def _label(column: str) -> str:
    return SCHEMA if column == SCHEMA else column_label(column)


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _scan_text_file(scan: LeakScan, table: TableSpec, path: Path) -> None:
    """A CSV output, read by the scan's own means: its raw bytes and every column as text (split at the
    delimiter the output keeps from its input: split at commas, a semicolon file's rows would mostly be
    skipped and its numbers found only in the raw bytes, under no column)."""
    scan.file(table.name, path, table.csv.encoding, table.csv.delimiter)


def _count_file(
    table: TableSpec,
    path: Path,
    people: People | None,
    scan: LeakScan | None,
    row: dict[str, Any],
    headcount: Headcount,
) -> None:
    """One pass over an output file: its rows, uncleared numbers, removed people and the people it holds; a
    Parquet output's every column goes through the leak scan in the same pass (a CSV output's is scanned apart)."""
    declared = Headcount.columns(table)  # the number and key columns: the proof's and the headcount's
    batches: Iterator[pa.RecordBatch]
    if scan is not None and format_of(path) is Format.PARQUET:
        schema = open_parquet(path).schema_arrow
        require_columns(path, schema.names, declared)
        _scan_schema(scan, table.name, schema)
        batches = parquet_batches(path)
        measure = partial(_measure_batch, table, people, headcount, partial(scan.batch, table.name))
    else:
        batches = read_batches(path, columns=declared, dialect=table.csv)
        measure = partial(_measure_batch, table, people, headcount, None)
    for rows, uncleared, removed in map_ahead(measure, prefetch(batches)):
        row["rows"] += rows
        row["uncleared_number_rows"] += uncleared
        row["removed_person_rows"] += removed
        progress.advance(rows)


def _measure_batch(
    table: TableSpec,
    people: People | None,
    headcount: Headcount,
    scan: Callable[..., WholeCells | None] | None,
    batch: pa.RecordBatch,
) -> tuple[int, int, int]:
    """A batch's rows, rows with an uncleared number and rows of removed people; scanned if asked, and
    its people counted. A plain text number column's cells are read once, by the scan, whose reading of
    whole cells (ASCII text: as the normaliser reads it) gives the uncleared count."""
    plain_numbers = table.nhs_number if table.nhs_number and not table.pseudonymised else None
    cells = scan(batch, whole=plain_numbers) if scan is not None else None
    headcount.add(table, batch)
    uncleared = removed = 0
    if people is not None and table.nhs_number:
        if cells is not None and not cells.folded:
            uncleared = people.uncleared_of(batch.num_rows, cells)
        else:
            uncleared = int(np.count_nonzero(people.codes(table, _plain(batch.column(table.nhs_number))) != KEEP))
    if people is not None and table.person_key:
        removed = people.removed_rows(table, _plain(batch.column(table.person_key)))
    return batch.num_rows, uncleared, removed


def _plain(values: pa.Array) -> pa.Array:
    """A declared column as the filter's reader gives it (the scan's reader keeps repeated text as a
    dictionary)."""
    return values.dictionary_decode() if pa.types.is_dictionary(values.type) else values


def _measured_in_place(
    home: ExtractHome,
    out_dir: Path,
    manifest: Manifest,
    used: CheckResultLike | None,
    measured: list[TableMeasure],
    unexpected: int,
    headcount: Headcount,
) -> tuple[list[dict[str, Any]], dict[str, LeakScan]]:
    """Outputs measured where they live (tables in a database: SQL aggregates, people learnt again from
    the input tables there, see :meth:`optout.homes.base.ExtractHome.measure_in_place`); only counts and
    content hashes come back. Every cell of each output is then streamed once through the scan, and its
    people counted from the same batches, unless the home scanned it where it lives by the same rule
    (Spark) and gave the counts per column. People are not known here for such a home, nor for an extract
    copied unfiltered (not scanned): the headcount is marked unknown."""
    spec = home.spec
    if used is None:
        headcount.known = False
    rows, scans = [], {}
    for table, measure in zip(spec.tables, measured, strict=True):
        row = _counts_row(table, manifest, unexpected, len(spec.tables))
        rows.append(row)
        report = _report(manifest, table, row, measure.present)
        if report is None:
            continue
        row["rows"] = measure.rows
        row["uncleared_number_rows"] = measure.uncleared_numbers or 0
        row["removed_person_rows"] = measure.uncleared_people or 0
        row["rows_mismatch"] = _rows_mismatch(measure.rows, measure.rows_in, report)
        row["hash_ok"] = report.sha256 is not None and measure.sha256 == report.sha256
        if used is not None:
            scan = scans[table.name] = _new_scan(spec, used)
            if measure.leaks is not None:  # scanned where it lives (Spark): counts per column, no people
                scan.counted(measure.leaks)
                if measure.schema is not None:
                    _scan_schema(scan, table.name, measure.schema)
                headcount.known = False
            else:
                for index, batch in enumerate(home.output_batches(out_dir, table)):
                    if index == 0:
                        _scan_schema(scan, table.name, batch.schema)
                    scan.batch(table.name, batch)
                    headcount.add(table, batch)
            _add_scan(row, scan)
    return rows, scans


def _report(manifest: Manifest, table: TableSpec, row: dict[str, Any], present: bool) -> TableReport | None:
    """The manifest's report of a table that is there to measure; else the row is marked and None."""
    try:
        report = manifest.table(table.name)
    except KeyError:
        row["rows_mismatch"] = 1
        return None
    if not present:
        row["rows_mismatch"] = max(report.rows_out, 1)
        return None
    return report


def _counts_row(table: TableSpec, manifest: Manifest, unexpected_files: int, spec_tables: int) -> dict[str, Any]:
    """A table's row of the counts frame before anything is measured (fails closed: hash not proved)."""
    return {
        "table": table.name,
        "rows": 0,
        "uncleared_number_rows": 0,
        "removed_person_rows": 0,
        "rows_mismatch": 0,
        "hash_ok": False,
        "leaked_values": 0,
        "unscannable_columns": 0,
        "schema_changed": 0,
        "unexpected_files": unexpected_files,
        "tables_mismatch": abs(spec_tables - len(manifest.tables)),
    }


def _add_scan(row: dict[str, Any], scan: LeakScan) -> None:
    row["leaked_values"] = scan.total()
    row["unscannable_columns"] = sum(leak.unscannable for leak in scan.leaks())


def _rows_mismatch(rows_out: int, rows_in: int, report: TableReport) -> int:
    """How far the output's rows, the input's rows and the manifest's removals are from reconciling."""
    return (
        abs(rows_out - report.rows_out)
        + abs(rows_in - report.rows_in)
        + abs(report.rows_in - report.rows_out - sum(report.removed.values()))
    )


def _same_schema(given: pa.Schema, written: pa.Schema) -> bool:
    """Same column names in the same order, with the same types: what comes out is what went in."""
    return given.names == written.names and given.types == written.types
