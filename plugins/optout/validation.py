"""The proof, in Great Expectations: a filtered extract holds nobody it may not hold, and is what the manifest says.

The obvious suite (``ExpectColumnValuesToNotBeInSet(value_set=opt_outs)``) copies the opt-out list into
every suite, result and Data Docs page and runs for minutes at millions of rows. Here the one proof
(:mod:`optout.proof`: our vectorised counts and the every-cell leak scan) reads each output once and
reduces it to counts per table; GX gets that small frame of counts and flags and proves each count is
zero, with result formats that list no values. No NHS number or person key ever reaches GX, so none can
reach an artefact it writes. This module runs the proof, hands its counts to the suite (run by
:mod:`optout.gx_suite` in a process of its own, importing GX while the proof reads) and keeps the record.

The four checks, by name: ``no_uncleared_number``, ``no_removed_person``, ``manifest_reconciles``,
``list_fresh_and_current``. Results go to ``<out_dir>.validation/`` beside the extract (never inside
it: the extract folder holds exactly what the manifest hashes and the gated export sends).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optout import gx_suite
from optout.atomic import staging_dir, write_bytes
from optout.clearance import CheckResultLike
from optout.errors import InputError, VerificationFailed
from optout.freshness import max_age as limit_in_force
from optout.gx_suite import CHECKS
from optout.homes import home_for
from optout.manifest import MANIFEST_NAME, Manifest, read_manifest, sha256_of
from optout.proof import Proof, prove, require_tables_unchanged
from optout.validation_record import record_validation, require_recorded

if TYPE_CHECKING:
    from optout.resolver import Resolver
    from optout.spec import ExtractSpec

RESULT_NAME = "result.json"
_NOT_GIVEN: Any = object()


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
    # Distinct people in the outputs (:mod:`optout.headcount`), kept only when the proof passed; None when
    # unknown. The gate takes it from the store's record of the validation, not from ``result.json``.
    people_out: int | None = None


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
    from optout.exemptions import effective

    gx_suite.start()  # GX imports in its own process while the proof reads the outputs
    check_result = effective(spec, check_result, resolver)  # the filter's view: consent and rows without a number
    out_dir = Path(out_dir).resolve()
    manifest = read_manifest(out_dir)
    now = now or datetime.now(UTC)
    max_age = limit_in_force(tighter=(max_age,))  # an argument may shorten the limit, never lengthen it
    if current is _NOT_GIVEN:
        from optout.store import Store

        current = Store().current()
    proof = prove(
        home_for(spec, resolver=resolver), out_dir, manifest, check_result, current=current, now=now, max_age=max_age
    )
    target = validation_dir(out_dir)
    with staging_dir(target) as staging:
        docs_final = Path(data_docs_dir).resolve() if data_docs_dir else target / "data_docs"
        building = staging_dir(docs_final) if data_docs_dir else contextlib.nullcontext(staging / "data_docs")
        with building as docs_build:
            outcome = gx_suite.run(proof.rows, staging / "gx", docs_build, staging / "checkpoint_result.json")
        checks = _checks(outcome, proof, manifest)
        ok = all(check.ok for check in checks)
        index = docs_final / "index.html"
        record = ValidationRecord(
            ok=ok,
            manifest_sha256=sha256_of(out_dir / MANIFEST_NAME),
            validated_at=now,
            version_id=manifest.version_id,
            data_docs_index=str(index),
            checks={check.name: check.ok for check in checks},
            people_out=proof.people if ok else None,
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
        people_out=record.people_out,
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
            people_out=data.get("people_out"),
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
    people_out = require_recorded(out_dir, record.manifest_sha256, url=store_url)
    manifest = read_manifest(out_dir)
    expected = {table.file for table in manifest.tables} | {MANIFEST_NAME}
    if extra := sorted(p.name for p in out_dir.iterdir() if p.name not in expected):
        raise VerificationFailed(f"{out_dir} holds {len(extra)} file(s) the manifest does not list; do not send it")
    in_database = require_tables_unchanged(manifest, connection, resolver=resolver, out_dir=out_dir)
    for table in manifest.tables:
        path = out_dir / table.file
        if table.file in in_database:
            continue
        if not path.is_file() or sha256_of(path) != table.sha256:
            raise VerificationFailed(f"{path} changed after validation; filter and validate again")
    return replace(record, people_out=people_out)  # the store's count: the folder's could be rewritten


def _checks(outcome: dict[str, bool], proof: Proof, manifest: Manifest) -> list[Check]:
    rows = proof.rows

    def total(column: str) -> int:
        return sum(int(row[column]) for row in rows)

    applies = "yes" if manifest.filtered else f"not filtered ({manifest.not_filtered_reason or manifest.purpose})"
    details: dict[str, dict[str, int | str]] = {
        "no_uncleared_number": {
            "uncleared_rows": total("uncleared_number_rows"),
            "found_in_any_cell": total("leaked_values"),
            "tables_scanned_cell_by_cell": proof.tables_scanned,
            "found_at": "; ".join(proof.found_at) or "none",
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
        "people_out": record.people_out,
        "details": {check.name: check.detail for check in checks},
    }
    write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
