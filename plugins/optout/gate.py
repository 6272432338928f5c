"""The last check before an extract leaves, and the ledger entry once it has.

A filtered extract may sit for hours between the filter and the send; in that time the list can go
stale or be replaced, a file can be edited, or validation can have failed. So, at send time:

- the manifest is there and names every file about to be sent, and each file's sha256 matches it;
- the purpose being sent for is the purpose the extract was filtered for;
- for secondary uses, the validation passed for this very manifest, and the list version the filter
  used is still the store's current version and still fresh (the limit and the version's age are kept
  for the ledger entry);
- for an exemption, the approval the spec cites is recorded, for the spec's legal basis, neither revoked
  nor expired (:mod:`optout.governance.approvals`).

An extract held in database tables (the SQL engine) is checked the same way, its tables' content hashes
computed again in the database (``connection`` is the spec's) instead of the files' sha256.

Any mismatch raises :class:`~optout.errors.VerificationFailed` (or the store's stale/missing errors)
and nothing may be sent. No Airflow here: operators and the ``gate()`` wrapper call these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from optout.errors import VerificationFailed
from optout.homes import home_of
from optout.manifest import MANIFEST_NAME, Manifest, read_manifest, sha256_of
from optout.purpose import Purpose

if TYPE_CHECKING:
    from optout.ledger import LedgerEntry
    from optout.resolver import Resolver
    from optout.spec import ExtractSpec
    from optout.store import Store
    from optout.validation import ValidationRecord


@dataclass(frozen=True)
class Permit:
    """What the gate proved about one extract; holds names, hashes and counts, never data."""

    out_dir: Path
    purpose: Purpose
    manifest: Manifest
    files: dict[str, Path]
    validation: ValidationRecord | None
    tables: tuple[str, ...] = ()  # output tables about to be sent, for an extract held in a database
    max_age: timedelta | None = None  # the limit the list was checked against (secondary uses)
    list_age: timedelta | None = None  # the list version's age when it was checked

    @property
    def hashes(self) -> dict[str, str]:
        sent = set(self.files) | set(self.tables)
        return {table.file: str(table.sha256) for table in self.manifest.tables if table.file in sent}


def check_before_send(
    out_dir: str | Path,
    purpose: Purpose,
    *,
    files: Iterable[str | Path] | None = None,
    store: Store | None = None,
    max_age: timedelta | None = None,
    now: datetime | None = None,
    connection: str | None = None,
    spec: ExtractSpec | None = None,
    resolver: Resolver | None = None,
) -> Permit:
    """Prove ``out_dir`` may be sent for ``purpose``; ``files`` are the paths about to go (default: all),
    or, for an extract held in database tables, the names of the tables about to go (default: all).

    :param connection: the spec's connection (SQLAlchemy URL or connection id) for an extract held in
        database tables; such an extract is refused without it.
    :param spec: the spec being sent: the manifest must be of this extract (name, legal basis, reference).
    :param resolver: reads ``connection`` when it is a connection id (the Airflow skin's; default: URLs only).

    :raises VerificationFailed: the manifest, a file, the purpose or the validation does not match.
    :raises StaleListError, NoVersionError: the list is not fresh now.
    """
    folder = Path(out_dir)
    manifest = _manifest(folder)
    if spec is not None:
        _require_same_extract(manifest, spec)
    if manifest.purpose != purpose.value:
        raise VerificationFailed(
            f"extract {manifest.spec_name!r} was prepared for purpose {manifest.purpose!r}, "
            f"not {purpose.value!r}: send it for the purpose its spec names"
        )
    in_database = not home_of(manifest).holds_files
    tables = _tables(folder, manifest, files) if in_database else ()
    sending = {} if in_database else _files(folder, manifest, files)
    validation, limit, list_age = None, None, None
    if purpose is Purpose.EXEMPT:
        _require_approval(manifest, store, now)
    if purpose.applies_opt_out or manifest.filtered:  # an exemption for rows without a number filters the rest
        # Re-hashes every output (files, or tables through the connection) against the manifest.
        validation = _require_validated(folder, connection, store.url if store is not None else None, resolver)
        limit, list_age = require_still_current(manifest, store, max_age=max_age, now=now)
    elif in_database:
        from optout.proof import require_tables_unchanged

        require_tables_unchanged(manifest, connection, tables, resolver=resolver, out_dir=folder)
    else:
        verify_files(manifest, sending)
    return Permit(folder, purpose, manifest, sending, validation, tables, limit, list_age)


def _require_approval(manifest: Manifest, store: Store | None, now: datetime | None) -> None:
    """An exempt extract leaves only under a valid approval recorded by governance staff."""
    from optout.governance.approvals import require_approval

    day = now.astimezone(UTC).date() if now is not None else None
    require_approval(manifest.legal_reference, manifest.legal_basis, store.url if store else None, today=day)


def _require_same_extract(manifest: Manifest, spec: ExtractSpec) -> None:
    """The folder holds the extract the spec names, prepared under the spec's legal basis."""
    recorded = (manifest.spec_name, manifest.legal_basis, manifest.legal_reference)
    named = (spec.name, spec.legal_basis.value if spec.legal_basis else None, spec.legal_reference)
    if recorded != named:
        raise VerificationFailed(
            f"the folder holds extract {manifest.spec_name!r} (legal basis {manifest.legal_basis!r}), not "
            f"{spec.name!r} (legal basis {named[1]!r}) as the spec being sent names: rerun the filter of this spec"
        )


def verify_files(manifest: Manifest, files: Mapping[str, Path]) -> None:
    """Each file's sha256 must be the manifest's: what is hashed here is what may be sent."""
    expected = {table.file: table.sha256 for table in manifest.tables}
    for name, path in files.items():
        if not expected.get(name):
            raise VerificationFailed(f"the manifest has no sha256 for {name!r}: rerun the filter")
        if sha256_of(path) != expected[name]:
            raise VerificationFailed(
                f"{name!r} changed after the filter wrote its manifest: nothing was sent; rerun the filter"
            )


def require_still_current(
    manifest: Manifest, store: Store | None, *, max_age: timedelta | None = None, now: datetime | None = None
) -> tuple[timedelta, timedelta]:
    """The version the filter used must be the current one and fresh, now; returns the limit it was
    checked against and the version's age."""
    from optout import freshness
    from optout.store import Store

    store = store or Store()
    limit = freshness.max_age(store.url, tighter=(max_age,))
    current = store.require_current(max_age=limit, now=now)
    if manifest.version_id != current.id:
        raise VerificationFailed(
            f"extract {manifest.spec_name!r} was filtered with list version {manifest.version_id}, but version "
            f"{current.id} is current now: rerun the filter and validation before sending"
        )
    return limit, freshness.age(current, now)


def record_disclosure(
    permit: Permit,
    *,
    recipient: str,
    dag_id: str | None = None,
    task_id: str | None = None,
    run_id: str | None = None,
    ledger_url: str | None = None,
) -> LedgerEntry:
    """One ledger entry for a send that happened: counts, hashes, version and validation, no data."""
    from optout.ledger import Disclosure, Ledger

    manifest, validation = permit.manifest, permit.validation
    removed_rows: dict[str, int] = {}
    for table in manifest.tables:
        for reason, count in table.removed.items():
            removed_rows[reason] = removed_rows.get(reason, 0) + int(count)
    disclosure = Disclosure(
        extract=manifest.spec_name,
        purpose=manifest.purpose,
        recipient=recipient,
        version_id=manifest.version_id,  # None for an extract copied unfiltered (direct care, exemption)
        version_checked_at=manifest.checked_at,
        rows_in=manifest.rows_in,
        rows_out=manifest.rows_out,
        removed_rows=removed_rows,
        removed_people=manifest.people_removed_total,
        validation_ok=validation.ok if validation is not None else False,
        output_hashes=permit.hashes,
        legal_basis=manifest.legal_basis,
        legal_reference=manifest.legal_reference,
        dag_id=dag_id,
        task_id=task_id,
        run_id=run_id,
        data_docs=validation.data_docs_index if validation is not None else None,
        scan_excluded=(manifest.input_scan or {}).get("excluded") or None,
        max_age_seconds=_seconds(permit.max_age),
        people_out=validation.people_out if validation is not None else None,
        version_age_seconds=_seconds(permit.list_age),
    )
    return Ledger(ledger_url).append(disclosure)


def _seconds(span: timedelta | None) -> int | None:
    return None if span is None else int(span.total_seconds())


def _manifest(folder: Path) -> Manifest:
    if not (folder / MANIFEST_NAME).is_file():
        raise VerificationFailed(f"no {MANIFEST_NAME} in {folder}: run the opt-out filter before the export")
    return read_manifest(folder)


def _files(folder: Path, manifest: Manifest, files: Iterable[str | Path] | None) -> dict[str, Path]:
    """Map each file about to be sent to its manifest entry; a file the manifest does not list is refused."""
    listed = {table.file for table in manifest.tables}
    if files is None:
        return {name: folder / name for name in sorted(listed)}
    base = folder.resolve()
    sending: dict[str, Path] = {}
    for item in files:
        path = Path(item)
        resolved = (path if path.is_absolute() else folder / path).resolve()
        name = resolved.relative_to(base).as_posix() if resolved.is_relative_to(base) else None
        if name not in listed:
            raise VerificationFailed(
                f"{path.name!r} is not an output listed in {folder / MANIFEST_NAME}: only filtered files may be sent"
            )
        sending[name] = resolved
    if not sending:
        raise VerificationFailed("no files to send")
    return sending


def _require_validated(
    folder: Path, connection: str | None, store_url: str | None, resolver: Resolver | None
) -> ValidationRecord:
    """The one switch point to the validation module (Great Expectations proof of this manifest, as the
    store recorded it)."""
    from optout.validation import require_validated

    return require_validated(folder, connection=connection, store_url=store_url, resolver=resolver)


def _tables(folder: Path, manifest: Manifest, names: Iterable[str | Path] | None) -> tuple[str, ...]:
    """The output tables about to be sent; a name the manifest does not list is refused."""
    listed = [table.file for table in manifest.tables]
    if names is None:
        return tuple(listed)
    wanted = tuple(str(name) for name in names)
    if unknown := [name for name in wanted if name not in listed]:
        raise VerificationFailed(
            f"{len(unknown)} table(s) to send are not outputs listed in {folder / MANIFEST_NAME}: "
            "only filtered tables may be sent"
        )
    if not wanted:
        raise VerificationFailed("no tables to send")
    return wanted
