"""Prove a filtered extract clean by reading it back, independently of the run that wrote it.

Checks: the manifest matches the spec and the given version; every output's sha256 and row count match
the manifest; no row carries a number that is not valid and cleared; no row carries the key of a person
who is not cleared (learnt again from the spec's input tables, or from the outputs when the inputs are
gone). A failing check is reported, never raised: the CLI turns ``ok=False`` into exit 1. Details are
counts only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from optout.cascade import Cascade, columns_of, key_types
from optout.clearance import KEEP, CheckResultLike, Clearance
from optout.errors import InputError
from optout.homes import home_for
from optout.homes.files.read import read_batches, schema_of
from optout.manifest import Manifest, TableReport, read_manifest, sha256_of
from optout.spec import ExtractSpec, TableSpec


class Check(NamedTuple):
    name: str
    ok: bool
    detail: str


@dataclass
class VerifyReport:
    """Every check made; ``ok`` only when all passed."""

    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok


def verify(spec: ExtractSpec, out_dir: str | Path, check_result: CheckResultLike | None) -> VerifyReport:
    """Re-read the extract in ``out_dir`` and check it against ``spec``, its manifest and ``check_result``."""
    folder = Path(out_dir)
    report = VerifyReport()
    try:
        manifest = read_manifest(folder)
    except InputError as exc:
        report.add("manifest", False, str(exc))
        return report
    report.add("manifest", True, f"{len(manifest.tables)} tables listed")
    if not _matches_spec(report, spec, manifest):
        return report
    in_place = home_for(spec).verify_in_place(manifest, check_result)
    if in_place is not None:
        return _verify_in_place(report, spec, manifest, check_result, in_place)
    for table in spec.tables:
        _check_file(report, folder / table.output_name, manifest.table(table.name))
    present = all((folder / table.output_name).is_file() for table in spec.tables)
    if not manifest.filtered:
        report.add("filtered", not spec.filtered, f"copied unfiltered: {manifest.not_filtered_reason}")
        return report
    if check_result is None:
        report.add("version", False, f"no check result given to verify against version {manifest.version_id}")
        return report
    given = check_result.info.id
    report.add("version", manifest.version_id == given, f"manifest version {manifest.version_id}, given {given}")
    if present:
        _check_rows(report, spec, folder, check_result)
    return report


def _verify_in_place(
    report: VerifyReport,
    spec: ExtractSpec,
    manifest: Manifest,
    check_result: CheckResultLike | None,
    checks: list[tuple[str, bool, str]],
) -> VerifyReport:
    """Outputs checked where they live (tables in a database): the same checks, made there."""
    if manifest.filtered and check_result is not None:
        given = check_result.info.id
        report.add("version", manifest.version_id == given, f"manifest version {manifest.version_id}, given {given}")
    elif manifest.filtered:
        report.add("version", False, f"no check result given to verify against version {manifest.version_id}")
    else:
        report.add("filtered", not spec.filtered, f"copied unfiltered: {manifest.not_filtered_reason}")
    for name, ok, detail in checks:
        report.add(name, ok, detail)
    return report


def _matches_spec(report: VerifyReport, spec: ExtractSpec, manifest: Manifest) -> bool:
    listed = {(table.name, table.file) for table in manifest.tables}
    expected = {(table.name, table.output_name) for table in spec.tables}
    return report.add(
        "spec",
        manifest.spec_name == spec.name and manifest.purpose == spec.purpose.value and listed == expected,
        f"manifest for {manifest.spec_name!r} ({manifest.purpose}), {len(listed)} tables; "
        f"spec {spec.name!r} ({spec.purpose.value}), {len(expected)} tables",
    )


def _check_file(report: VerifyReport, path: Path, listed: TableReport) -> None:
    if not path.is_file():
        report.add(f"{listed.name}: file", False, f"{listed.file} is missing")
        return
    unchanged = sha256_of(path) == listed.sha256
    report.add(
        f"{listed.name}: sha256",
        unchanged,
        "matches the manifest" if unchanged else "differs from the manifest: the file changed",
    )
    rows = sum(batch.num_rows for batch in read_batches(path, columns=_any_column(path)))
    balanced = listed.rows_in - sum(listed.removed.values()) == listed.rows_out
    report.add(
        f"{listed.name}: rows",
        rows == listed.rows_out and balanced,
        f"{rows} rows in the file, manifest: {listed.rows_in} in, {sum(listed.removed.values())} removed, "
        f"{listed.rows_out} out",
    )


def _any_column(path: Path) -> list[str]:
    return schema_of(path).names[:1]


def _check_rows(report: VerifyReport, spec: ExtractSpec, folder: Path, check_result: CheckResultLike) -> None:
    inputs_present = all(table.path is not None and table.path.is_file() for table in spec.tables)
    learn_from = {
        table.name: table.path if inputs_present and table.path else folder / table.output_name for table in spec.tables
    }
    schemas = {name: schema_of(path) for name, path in learn_from.items()}
    cascade = Cascade(spec, check_result, key_types(spec, schemas))
    cascade.learn_all(lambda table: read_batches(learn_from[table.name], columns=columns_of(table)))
    clearance = Clearance(check_result)
    source = "the input tables" if inputs_present else "the outputs (inputs not found)"
    for table in spec.tables:
        uncleared_numbers, uncleared_people = _count_uncleared(table, folder, cascade, clearance)
        if table.nhs_number:
            report.add(
                f"{table.name}: numbers",
                uncleared_numbers == 0,
                f"{uncleared_numbers} rows with a number that is not valid and cleared",
            )
        if table.person_key:
            report.add(
                f"{table.name}: people",
                uncleared_people == 0,
                f"{uncleared_people} rows of people who are not cleared (people learnt from {source})",
            )


def _count_uncleared(table: TableSpec, folder: Path, cascade: Cascade, clearance: Clearance) -> tuple[int, int]:
    numbers = people = 0
    for batch in read_batches(folder / table.output_name, columns=columns_of(table)):
        if table.nhs_number:
            numbers += int((clearance.codes(batch.column(table.nhs_number)) != KEEP).sum())
        if table.person_key:
            people += int((cascade.codes(table, batch) != KEEP).sum())
    return numbers, people
