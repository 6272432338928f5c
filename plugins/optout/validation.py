"""The proof, in Great Expectations: a filtered extract holds nobody it may not hold, and is what the manifest says.

The obvious suite (``ExpectColumnValuesToNotBeInSet(value_set=opt_outs)``) copies the opt-out list into
every suite, result and Data Docs page and runs for minutes at millions of rows. Here our own vectorised
code (``Clearance``/``NumberSet``, the same lookups the filter uses) streams each output once and reduces
it to counts per table; GX gets that small frame of counts and flags and proves each count is zero. No
NHS number or person key ever reaches GX, so none can reach an artefact it writes.

The four checks, by name: ``no_uncleared_number``, ``no_removed_person``, ``manifest_reconciles``,
``list_fresh_and_current``. Results go to ``<out_dir>.validation/`` beside the extract (never inside
it: the extract folder holds exactly what the manifest hashes and the gated export sends).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from optout.atomic import staging_dir, write_bytes
from optout.clearance import KEEP, CheckResultLike, Clearance
from optout.errors import InputError, VerificationFailed
from optout.freshness import is_fresh
from optout.freshness import max_age as limit_in_force
from optout.homes import home_for, home_of
from optout.homes.files.read import count_rows, read_batches, schema_of
from optout.leak_scan import LeakScan
from optout.manifest import MANIFEST_NAME, Manifest, TableReport, read_manifest, sha256_of
from optout.nhs_number import is_valid
from optout.streams import map_ahead, prefetch, reused_memory
from optout.validation_record import record_validation, require_recorded

if TYPE_CHECKING:
    from optout.homes.base import ExtractHome
    from optout.homes.sql.run import TableMeasure
    from optout.resolver import Reader, Resolver
    from optout.spec import ExtractSpec, TableSpec

RESULT_NAME = "result.json"
CHECKS = ("no_uncleared_number", "no_removed_person", "manifest_reconciles", "list_fresh_and_current")
SUITE_NAME = "optout_proof"
# Values GX may list: none. SUMMARY keeps observed counts for Data Docs; every value list is switched off.
_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0, "include_unexpected_rows": False}
_NOT_GIVEN: Any = object()
_LEAKS_AT = "_leaks_at"  # a row's list of where the scan found numbers: shown in the detail, never given to GX


@dataclass(frozen=True)
class Check:
    """One of the four proofs; ``detail`` holds counts and short words only."""

    name: str
    ok: bool
    detail: dict[str, int | str]


@dataclass(frozen=True)
class ValidationResult:
    ok: bool
    checks: list[Check]
    data_docs_index: Path | None
    result_path: Path


@dataclass(frozen=True)
class ValidationRecord:
    """What ``result.json`` holds: enough for the gated export and the ledger, no numbers."""

    ok: bool
    manifest_sha256: str
    validated_at: datetime
    version_id: int | None
    data_docs_index: str | None
    checks: dict[str, bool]


def validation_dir(out_dir: str | Path) -> Path:
    """``<out_dir>.validation``: a sibling of the extract folder."""
    out = Path(out_dir).resolve()
    return out.with_name(f"{out.name}.validation")


def run_validation(
    spec: ExtractSpec,
    out_dir: str | Path,
    check_result: CheckResultLike | None,
    *,
    data_docs_dir: str | Path | None = None,
    now: datetime | None = None,
    max_age: timedelta | None = None,
    current: Any = _NOT_GIVEN,
    store_url: str | None = None,
    resolver: Resolver | None = None,
) -> ValidationResult:
    """Prove the extract in ``out_dir`` and write the result and Data Docs; a failed proof returns ``ok=False``.

    :param check_result: the version the filter used (``Store().load(manifest.version_id)``); None only
        for extracts copied unfiltered (direct care, exemption).
    :param current: the store's current ``VersionInfo`` (default: asked of the store).
    :param store_url: the store the validation is recorded in (default: ``OPTOUT_STORE_URL``).
    :param resolver: reads the connection ids the spec names (the Airflow skin's; default: URLs only).
    """
    out_dir = Path(out_dir).resolve()
    manifest = read_manifest(out_dir)
    now = now or datetime.now(UTC)
    max_age = limit_in_force(tighter=(max_age,))  # an argument may shorten the limit, never lengthen it
    if current is _NOT_GIVEN:
        from optout.store import Store

        current = Store().current()
    rows = _measure(home_for(spec, resolver=resolver), out_dir, manifest, check_result)
    freshness = _freshness(manifest, check_result, current, now, max_age)
    frame_rows = [{**row, **freshness} for row in rows]
    target = validation_dir(out_dir)
    with staging_dir(target) as staging:
        docs_final = Path(data_docs_dir).resolve() if data_docs_dir else target / "data_docs"
        building = staging_dir(docs_final) if data_docs_dir else contextlib.nullcontext(staging / "data_docs")
        with building as docs_build:
            counts = [{k: v for k, v in row.items() if k != _LEAKS_AT} for row in frame_rows]
            outcome = _run_suite(counts, staging / "gx", docs_build, staging / "checkpoint_result.json")
        checks = _checks(outcome, frame_rows, manifest)
        ok = all(check.ok for check in checks)
        index = docs_final / "index.html"
        record = ValidationRecord(
            ok=ok,
            manifest_sha256=sha256_of(out_dir / MANIFEST_NAME),
            validated_at=now,
            version_id=manifest.version_id,
            data_docs_index=str(index),
            checks={check.name: check.ok for check in checks},
        )
        _write_record(staging / RESULT_NAME, record, checks)
    # The record the gate trusts is the store's, not the folder's (DAG code can rewrite a folder).
    record_validation(
        out_dir,
        extract=manifest.spec_name,
        manifest_sha256=record.manifest_sha256,
        ok=ok,
        version_id=manifest.version_id,
        url=store_url,
    )
    return ValidationResult(ok, checks, index, target / RESULT_NAME)


def read_validation(out_dir: str | Path) -> ValidationRecord | None:
    """The last validation of the extract in ``out_dir``, or None if it was never validated."""
    path = validation_dir(out_dir) / RESULT_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ValidationRecord(
            ok=bool(data["ok"]),
            manifest_sha256=data["manifest_sha256"],
            validated_at=datetime.fromisoformat(data["validated_at"]),
            version_id=data["version_id"],
            data_docs_index=data["data_docs_index"],
            checks={name: bool(value) for name, value in data["checks"].items()},
        )
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(f"validation result is damaged ({type(exc).__name__}); validate again", path=path) from None


def require_validated(
    out_dir: str | Path,
    *,
    connection: str | None = None,
    store_url: str | None = None,
    resolver: Resolver | None = None,
) -> ValidationRecord:
    """Refuse unless the extract passed validation and no output changed since (outputs are re-hashed).

    The manifest must be the one the store recorded as validated (``optout.validation_record``), so a
    rewritten manifest and ``result.json`` do not pass.

    :param connection: the spec's connection, for an extract held in database tables (their content
        hashes are computed again there); without it such an extract is refused.
    :param store_url: the store holding the validation records (default: ``OPTOUT_STORE_URL``).
    :param resolver: reads ``connection`` when it is a connection id (default: URLs only).
    """
    out_dir = Path(out_dir).resolve()
    record = read_validation(out_dir)
    if record is None:
        raise VerificationFailed(f"{out_dir} was never validated; run the validation first")
    if not record.ok:
        failed = ", ".join(name for name, ok in record.checks.items() if not ok)
        raise VerificationFailed(f"{out_dir} failed validation ({failed}); do not send it")
    if sha256_of(out_dir / MANIFEST_NAME) != record.manifest_sha256:
        raise VerificationFailed(f"{out_dir}/{MANIFEST_NAME} changed after validation; filter and validate again")
    require_recorded(out_dir, record.manifest_sha256, url=store_url)
    manifest = read_manifest(out_dir)
    expected = {table.file for table in manifest.tables} | {MANIFEST_NAME}
    if extra := sorted(p.name for p in out_dir.iterdir() if p.name not in expected):
        raise VerificationFailed(f"{out_dir} holds {len(extra)} file(s) the manifest does not list; do not send it")
    in_database = require_tables_unchanged(manifest, connection, resolver=resolver)
    for table in manifest.tables:
        path = out_dir / table.file
        if table.file in in_database:
            continue
        if not path.is_file() or sha256_of(path) != table.sha256:
            raise VerificationFailed(f"{path} changed after validation; filter and validate again")
    return record


def require_tables_unchanged(
    manifest: Manifest,
    connection: str | None,
    names: Iterable[str] | None = None,
    *,
    resolver: Resolver | None = None,
) -> set[str]:
    """Each output table the manifest lists (or those of ``names``) must hold what the manifest hashed:
    the database side of re-hashing files. Returns the tables checked (none for a file extract).

    :raises VerificationFailed: a table changed or is missing, or no connection was given to reach them.
    """
    from optout.resolver import OUTSIDE_AIRFLOW

    database = (resolver or OUTSIDE_AIRFLOW).database_url(connection) if connection is not None else None
    home = home_of(manifest, database=database)
    if home.holds_files:
        return set()
    if connection is None:
        raise VerificationFailed(
            f"extract {manifest.spec_name!r} is held in database tables: give the spec's connection so they can "
            "be hashed again before sending"
        )
    listed = {table.file: table.sha256 for table in manifest.tables}
    wanted = set(listed) if names is None else set(names)
    if not wanted:
        return wanted
    now = home.hashes(Path(), wanted)
    for name in sorted(wanted):
        if now.get(name) is None:
            raise VerificationFailed(f"table {name!r} is missing: filter and validate again")
        if now[name] != listed.get(name):
            raise VerificationFailed(
                f"table {name!r} changed after the filter wrote its manifest: nothing was sent; "
                "filter and validate again"
            )
    return wanted


def _measure(
    home: ExtractHome, out_dir: Path, manifest: Manifest, check_result: CheckResultLike | None
) -> list[dict[str, Any]]:
    """One row of counts per table: the only thing GX ever sees."""
    spec = home.spec
    if manifest.filtered and check_result is None:
        raise InputError("a filtered extract is validated against the version it used; load it", field="check_result")
    listed = {table.file for table in manifest.tables} | {MANIFEST_NAME}
    unexpected = sum(1 for p in out_dir.iterdir() if p.name not in listed)
    in_place = home.measure_in_place(check_result if manifest.filtered else None)
    if in_place is not None:
        rows = _measured_in_place(spec, manifest, in_place, unexpected)
        if manifest.filtered and check_result is not None:
            for table, row, measure in zip(spec.tables, rows, in_place, strict=True):
                if measure.present:  # every cell of the output table, streamed from the database
                    scan = LeakScan(check_result.cleared_set)
                    for batch in home.output_batches(out_dir, table):
                        scan.batch(table.name, batch)
                    _add_scan(row, scan, table, None)
        return rows
    present = [t for t in spec.tables if (out_dir / t.output_name).is_file()]
    # hashlib and Arrow release the GIL: the outputs are hashed and scanned cell by cell while their
    # declared columns are read and checked.
    with (
        reused_memory(),
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="optout-hash") as pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="optout-scan") as scanning,
    ):
        hashes = {t.name: pool.submit(sha256_of, out_dir / t.output_name) for t in present}
        scans: dict[str, Future[LeakScan]] = {}
        if manifest.filtered and check_result is not None:
            scans = {t.name: scanning.submit(_scan, t, out_dir, check_result) for t in present}
        people = _People(spec, check_result, home.secret) if manifest.filtered and check_result is not None else None
        rows = [
            _measure_table(table, out_dir, manifest, people, unexpected, len(spec.tables), hashes.get(table.name))
            for table in spec.tables
        ]
        for table, row in zip(spec.tables, rows, strict=True):
            if table.name in scans:
                _add_scan(row, scans[table.name].result(), table, out_dir / table.output_name)
        return rows


def _scan(table: TableSpec, out_dir: Path, check_result: CheckResultLike) -> LeakScan:
    """Every cell of one output (and a CSV output's raw bytes), whatever the spec declares: the scan
    shares neither the filter's reader nor its idea of which columns hold numbers."""
    scan = LeakScan(check_result.cleared_set)
    scan.file(table.name, out_dir / table.output_name)
    return scan


def _add_scan(row: dict[str, Any], scan: LeakScan, table: TableSpec, output: Path | None) -> None:
    """The scan's counts into the table's row; where it found them (names, counts) beside, not for GX."""
    leaks = scan.leaks()
    row["leaked_values"] = scan.total()
    row["unscannable_columns"] = sum(leak.unscannable for leak in leaks)
    row[_LEAKS_AT] = [
        f"{table.name}.{_column_label(leak.column)}: {'cannot be scanned' if leak.unscannable else leak.values}"
        for leak in leaks
    ]
    if output is not None and table.path is not None and table.path.is_file():
        row["schema_changed"] = int(not _same_schema(schema_of(table.path), schema_of(output)))


def _column_label(name: str) -> str:
    """A column's name for a report, unless the name itself could be an NHS number (a header that is data)."""
    return "a column named like an NHS number" if is_valid(name) else name


def _same_schema(given: pa.Schema, written: pa.Schema) -> bool:
    """Same column names in the same order, with the same types: what comes out is what went in."""
    return given.names == written.names and given.types == written.types


class _People:
    """Who may appear in the outputs, learnt again from the inputs with the filter's own primitives.

    A key is removed when any input row carrying it beside a number is not cleared; a key only tables
    carry must also have been seen beside a number. Key comparison (integers, or trimmed text) and the
    key indexes are the filter's (``KeyKind``, ``KeySet``); the decision is taken here, independently.
    """

    def __init__(self, spec: ExtractSpec, check_result: CheckResultLike, secret: Reader | None) -> None:
        from optout.cascade import KeyKind, KeySet, key_types
        from optout.homes.files.read import schema_of
        from optout.pseudonym import PseudonymClearance, load_key

        plain = Clearance(check_result)
        self._clearances: dict[str, Any] = {
            t.name: PseudonymClearance(check_result, load_key(t.pseudonymised, connection_secret=secret))
            if t.pseudonymised
            else plain
            for t in spec.tables
        }
        self.kind = KeyKind.INTEGER
        if any(t.person_key for t in spec.tables):  # without keys there is nobody to learn
            schemas = {t.name: schema_of(_input_path(t)) for t in spec.tables}
            self.kind = KeyKind.of(key_types(spec, schemas).values())
        bad: list[pa.Array] = []
        seen: list[pa.Array] = []
        needs_seen = any(t.person_key and not t.nhs_number for t in spec.tables)
        for table in spec.tables:
            if not (table.nhs_number and table.person_key):
                continue
            batches = prefetch(read_batches(_input_path(table), columns=[table.nhs_number, table.person_key]))
            for removed, keys in map_ahead(partial(self._keys_of, table, needs_seen), batches):
                bad.append(removed)
                if keys is not None:
                    seen.append(keys)
        self.removed = KeySet(bad, self.kind)
        self.known = KeySet(seen, self.kind) if needs_seen else None

    def _keys_of(self, table: TableSpec, all_keys: bool, batch: pa.RecordBatch) -> tuple[pa.Array, pa.Array | None]:
        """A batch's distinct keys beside an uncleared number (and all its distinct keys, if asked)."""
        assert table.nhs_number and table.person_key
        keys = self.kind.column(batch.column(table.person_key))
        uncleared = self.codes(table, batch.column(table.nhs_number)) != KEEP
        removed = pc.unique(keys.filter(pa.array(uncleared)).drop_null())
        return removed, pc.unique(keys.drop_null()) if all_keys else None

    def codes(self, table: TableSpec, numbers: pa.Array | pa.ChunkedArray) -> np.ndarray:
        return np.asarray(self._clearances[table.name].codes(numbers))

    def removed_rows(self, table: TableSpec, keys: pa.Array | pa.ChunkedArray) -> int:
        """Rows whose key is a removed person's, or (in a key-only table) unknown or blank."""
        keys = self.kind.column(keys)
        hit = self.removed.contains(keys)
        if not table.nhs_number:
            assert self.known is not None
            hit |= ~self.known.contains(keys)  # unseen or blank keys: nobody checked them
        return int(np.count_nonzero(hit))


def _input_path(table: TableSpec) -> Path:
    if table.path is None:
        raise InputError(
            "validation re-reads the inputs to find removed people; give the table's path", field=f"{table.name}.path"
        )
    return table.path


def _measure_table(
    table: TableSpec,
    out_dir: Path,
    manifest: Manifest,
    people: _People | None,
    unexpected_files: int,
    spec_tables: int,
    digest: Future[str] | None,
) -> dict[str, Any]:
    path = out_dir / table.output_name
    row = _counts_row(table, manifest, unexpected_files, spec_tables)
    try:
        report = manifest.table(table.name)
    except KeyError:
        row["rows_mismatch"] = 1
        return row
    if digest is None:
        row["rows_mismatch"] = max(report.rows_out, 1)
        return row
    number_col = table.nhs_number if people is not None else None
    key_col = table.person_key if people is not None else None
    columns = [c for c in (number_col, key_col) if c]

    def measure(batch: pa.RecordBatch) -> tuple[int, int, int]:
        uncleared = removed = 0
        if people is not None and number_col:
            uncleared = int(np.count_nonzero(people.codes(table, batch.column(number_col)) != KEEP))
        if people is not None and key_col:
            removed = people.removed_rows(table, batch.column(key_col))
        return batch.num_rows, uncleared, removed

    for rows, uncleared, removed in map_ahead(measure, prefetch(read_batches(path, columns=columns))):
        row["rows"] += rows
        row["uncleared_number_rows"] += uncleared
        row["removed_person_rows"] += removed
    rows_in = count_rows(table.path) if table.path is not None and table.path.is_file() else report.rows_in
    row["rows_mismatch"] = _rows_mismatch(row["rows"], rows_in, report)
    row["hash_ok"] = report.sha256 is not None and digest.result() == report.sha256
    return row


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


def _rows_mismatch(rows_out: int, rows_in: int, report: TableReport) -> int:
    """How far the output's rows, the input's rows and the manifest's removals are from reconciling."""
    return (
        abs(rows_out - report.rows_out)
        + abs(rows_in - report.rows_in)
        + abs(report.rows_in - report.rows_out - sum(report.removed.values()))
    )


def _measured_in_place(
    spec: ExtractSpec, manifest: Manifest, measured: list[TableMeasure], unexpected_files: int
) -> list[dict[str, Any]]:
    """Outputs measured where they live (tables in a database: SQL aggregates, people learnt again from
    the input tables there, see :meth:`optout.homes.base.ExtractHome.measure_in_place`). Only counts and
    content hashes come back; GX sees the same one-row-per-table frame as for files."""
    rows = []
    for table, measure in zip(spec.tables, measured, strict=True):
        row = _counts_row(table, manifest, unexpected_files, len(spec.tables))
        rows.append(row)
        try:
            report = manifest.table(table.name)
        except KeyError:
            row["rows_mismatch"] = 1
            continue
        if not measure.present:
            row["rows_mismatch"] = max(report.rows_out, 1)
            continue
        row["rows"] = measure.rows
        row["uncleared_number_rows"] = measure.uncleared_numbers or 0
        row["removed_person_rows"] = measure.uncleared_people or 0
        row["rows_mismatch"] = _rows_mismatch(measure.rows, measure.rows_in, report)
        row["hash_ok"] = report.sha256 is not None and measure.sha256 == report.sha256
    return rows


def _freshness(
    manifest: Manifest, check_result: CheckResultLike | None, current: Any, now: datetime, max_age: timedelta
) -> dict[str, bool]:
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


@dataclass(frozen=True)
class _Expectation:
    check: str
    kind: str  # "zero": the column's maximum is 0; "true": every value is True
    column: str


_SUITE = (
    _Expectation("no_uncleared_number", "zero", "uncleared_number_rows"),
    _Expectation("no_uncleared_number", "true", "version_matches"),
    _Expectation("no_uncleared_number", "zero", "leaked_values"),
    _Expectation("no_uncleared_number", "zero", "unscannable_columns"),
    _Expectation("no_removed_person", "zero", "removed_person_rows"),
    _Expectation("manifest_reconciles", "zero", "rows_mismatch"),
    _Expectation("manifest_reconciles", "true", "hash_ok"),
    _Expectation("manifest_reconciles", "zero", "unexpected_files"),
    _Expectation("manifest_reconciles", "zero", "tables_mismatch"),
    _Expectation("manifest_reconciles", "zero", "schema_changed"),
    _Expectation("list_fresh_and_current", "true", "list_fresh_at_filter"),
    _Expectation("list_fresh_and_current", "true", "list_is_current"),
)


def _run_suite(rows: list[dict[str, Any]], gx_root: Path, docs_dir: Path, checkpoint_json: Path) -> dict[str, bool]:
    """Run the suite over the frame of counts; return each check's success (all its expectations)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    import great_expectations.expectations as gxe
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=str(gx_root))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.update_data_docs_site(
        "local_site",
        {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    batch = (
        context.data_sources.add_pandas("optout")
        .add_dataframe_asset("extract_counts")
        .add_batch_definition_whole_dataframe("per_table")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=SUITE_NAME))
    for item in _SUITE:
        meta = {"check": item.check}
        if item.kind == "zero":
            suite.add_expectation(
                gxe.ExpectColumnMaxToBeBetween(column=item.column, min_value=0, max_value=0, meta=meta)
            )
        else:
            suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=item.column, value_set=[True], meta=meta))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=SUITE_NAME, data=batch, suite=suite))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=SUITE_NAME,
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
            result_format=_RESULT_FORMAT,
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": pd.DataFrame(rows)})
    write_bytes(checkpoint_json, json.dumps(result.describe_dict(), indent=2, default=str).encode())
    outcome = dict.fromkeys(CHECKS, True)
    for run in result.run_results.values():
        for checked in run.results:
            assert checked.expectation_config is not None
            name = checked.expectation_config.meta["check"]
            outcome[name] = outcome[name] and bool(checked.success)
    return outcome


def _checks(outcome: dict[str, bool], rows: list[dict[str, Any]], manifest: Manifest) -> list[Check]:
    def total(column: str) -> int:
        return sum(int(row[column]) for row in rows)

    applies = "yes" if manifest.filtered else f"not filtered ({manifest.not_filtered_reason or manifest.purpose})"
    details: dict[str, dict[str, int | str]] = {
        "no_uncleared_number": {
            "uncleared_rows": total("uncleared_number_rows"),
            "found_in_any_cell": total("leaked_values"),
            "tables_scanned_cell_by_cell": sum(1 for row in rows if _LEAKS_AT in row),
            "found_at": "; ".join(at for row in rows for at in row.get(_LEAKS_AT, [])) or "none",
            "applies": applies,
        },
        "no_removed_person": {"removed_person_rows": total("removed_person_rows"), "applies": applies},
        "manifest_reconciles": {
            "tables": len(rows),
            "rows": total("rows"),
            "row_mismatches": total("rows_mismatch"),
            "files_changed": sum(1 for row in rows if not row["hash_ok"]),
            "schemas_changed": total("schema_changed"),
            "unexpected_files": rows[0]["unexpected_files"] if rows else 0,
        },
        "list_fresh_and_current": {
            "version_id": manifest.version_id if manifest.version_id is not None else "none",
            "fresh_at_filter": str(all(row["list_fresh_at_filter"] for row in rows)).lower(),
            "still_current": str(all(row["list_is_current"] for row in rows)).lower(),
        },
    }
    return [Check(name, outcome[name], details[name]) for name in CHECKS]


def _write_record(path: Path, record: ValidationRecord, checks: list[Check]) -> None:
    data = {
        "ok": record.ok,
        "manifest_sha256": record.manifest_sha256,
        "validated_at": record.validated_at.isoformat(),
        "version_id": record.version_id,
        "data_docs_index": record.data_docs_index,
        "checks": record.checks,
        "details": {check.name: check.detail for check in checks},
    }
    write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
