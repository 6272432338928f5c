"""The CSV/Parquet engine: streams each table in batches, so memory stays bounded whatever the size.

Reading runs ahead on one thread and writing (with hashing) behind on another, so the Arrow work of
both overlaps the decisions taken in between; pass 1 of the cascade examines batches on two threads.
Arrow buffers come from the system allocator meanwhile (see :func:`optout.tabular.reused_memory`).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from optout.atomic import OWNER_ONLY_DIR, OWNER_ONLY_FILE
from optout.clearance import KEEP, CheckResultLike
from optout.filtering.cascade import Cascade, columns_of, key_types, unfiltered_report
from optout.manifest import TableReport, sha256_of
from optout.nhs_number import require_number_column
from optout.spec import ExtractSpec, TableSpec
from optout.tabular import (
    BatchWriter,
    count_rows,
    prefetch,
    read_batches,
    repetitive_text_columns,
    reused_memory,
    schema_of,
)

ENGINE = "arrow_files"


def _source(table: TableSpec) -> Path:
    if table.path is None:
        raise ValueError(f"table {table.name!r} has no path; pass it as a DataFrame")
    return table.path


@reused_memory()
def filter_files(
    spec: ExtractSpec, staging: Path, check_result: CheckResultLike
) -> tuple[list[TableReport], dict[str, int]]:
    """Filter every table of ``spec`` into ``staging``; return per-table reports and people removed."""
    schemas = {table.name: schema_of(_source(table)) for table in spec.tables}
    for table in spec.tables:
        if table.nhs_number and table.pseudonymised is None and table.nhs_number in schemas[table.name].names:
            kind = schemas[table.name].field(table.nhs_number).type
            require_number_column(kind, path=table.path, column=table.nhs_number)
    cascade = Cascade(spec, check_result, key_types(spec, schemas))
    cascade.learn_all(lambda table: prefetch(read_batches(_source(table), columns=columns_of(table))))
    hashes = {}
    for table in spec.tables:
        target = _target(staging, table)
        with BatchWriter(target, schemas[table.name], like=table.path) as writer:
            text = repetitive_text_columns(_source(table), exclude=columns_of(table))
            for batch in prefetch(read_batches(_source(table), as_dictionary=text)):
                writer.write(batch, cascade.codes(table, batch) == KEEP)
        hashes[table.name] = writer.sha256
    reports = [replace(report, sha256=hashes[report.name]) for report in cascade.reports()]
    return reports, cascade.people_removed()


def copy_files(spec: ExtractSpec, staging: Path) -> list[TableReport]:
    """Copy every table byte for byte (direct care, exemptions), counting rows but removing none."""
    reports = []
    for table in spec.tables:
        target = _target(staging, table)
        shutil.copyfile(_source(table), target)
        target.chmod(OWNER_ONLY_FILE)
        reports.append(unfiltered_report(table, count_rows(target), sha256_of(target)))
    return reports


def _target(staging: Path, table: TableSpec) -> Path:
    target = staging / table.output_name
    target.parent.mkdir(parents=True, exist_ok=True, mode=OWNER_ONLY_DIR)
    return target
