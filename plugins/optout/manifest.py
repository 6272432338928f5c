"""``manifest.json``: what a filter run did, in counts, written beside the outputs it describes.

It names the spec, purpose, legal basis and the store version used, and for each table the rows in,
out and removed by reason plus the output's sha256, so verification can prove the files unchanged.
It never holds an NHS number or a person key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optout.atomic import write_bytes
from optout.errors import InputError

if TYPE_CHECKING:
    from optout.clearance import CheckResultLike
    from optout.spec import ExtractSpec

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TableReport:
    """One table's counts; ``removed`` maps every reason to its row count."""

    name: str
    file: str
    format: str
    rows_in: int
    rows_out: int
    removed: dict[str, int]
    sha256: str | None = None


@dataclass(frozen=True)
class Manifest:
    """One filter run. ``people_removed`` counts distinct person keys (and, for rows without a key,
    distinct NHS numbers) by the reason that removed them; ``not_filtered_reason`` says why an extract
    was copied unfiltered (direct care, recorded exemption).
    """

    spec_name: str
    purpose: str
    version_id: int | None
    checked_at: datetime | None
    filtered_at: datetime
    filtered: bool
    engine: str
    tables: tuple[TableReport, ...]
    people_removed: dict[str, int] = field(default_factory=dict)
    legal_basis: str | None = None
    legal_reference: str | None = None
    not_filtered_reason: str | None = None
    # The input leak scan (:mod:`optout.input_scan`): what it does on a finding, what it scanned, and every
    # column the spec excludes with its reason. None when the extract was copied unfiltered.
    input_scan: dict[str, Any] | None = None
    # Rows and people kept by a person-by-person exemption: {"kept_by_consent": {"rows": n, "people": m}}.
    kept: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def rows_in(self) -> int:
        return sum(table.rows_in for table in self.tables)

    @property
    def rows_out(self) -> int:
        return sum(table.rows_out for table in self.tables)

    @property
    def rows_removed(self) -> int:
        return self.rows_in - self.rows_out

    @property
    def people_removed_total(self) -> int:
        return sum(self.people_removed.values())

    def table(self, name: str) -> TableReport:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["format_version"] = FORMAT_VERSION
        data["checked_at"] = self.checked_at.isoformat() if self.checked_at else None
        data["filtered_at"] = self.filtered_at.isoformat()
        data["rows_removed"] = self.rows_removed
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        data = dict(data)
        data.pop("format_version", None)
        data.pop("rows_removed", None)
        data["checked_at"] = datetime.fromisoformat(data["checked_at"]) if data.get("checked_at") else None
        data["filtered_at"] = datetime.fromisoformat(data["filtered_at"])
        data["tables"] = tuple(TableReport(**table) for table in data["tables"])
        return cls(**data)

    def summary_lines(self) -> list[str]:
        """Counts for a terminal or a log (never a number or key)."""
        if self.filtered:
            checked = self.checked_at.isoformat(timespec="seconds") if self.checked_at else "unknown"
            lines = [f"opt-out list version {self.version_id} (checked {checked})"]
        else:
            lines = [f"not filtered: {self.not_filtered_reason}"]
        for table in self.tables:
            lines.append(f"  {table.name}: {table.rows_in} rows in, {table.rows_out} out{_why(table.removed)}")
        lines.append(f"people removed: {self.people_removed_total}{_why(self.people_removed)}")
        for item in (self.input_scan or {}).get("excluded", []):
            lines.append(f"not scanned for NHS numbers: {item['table']}.{item['column']} ({item['reason']})")
        for why, counts in self.kept.items():
            lines.append(f"{why.replace('_', ' ')}: {counts.get('rows', 0)} rows, {counts.get('people', 0)} people")
        return lines

    @classmethod
    def read(cls, folder: str | Path) -> Manifest:
        """The manifest in ``folder`` (see :func:`read_manifest`)."""
        return read_manifest(folder)

    def write(self, folder: str | Path) -> Path:
        """Write ``manifest.json`` into ``folder`` atomically; return its path."""
        path = Path(folder) / MANIFEST_NAME
        write_bytes(path, (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode())
        return path


def _why(counts: dict[str, int]) -> str:
    listed = ", ".join(f"{reason} {count}" for reason, count in counts.items() if count)
    return f" ({listed})" if listed else ""


def read_manifest(folder: str | Path) -> Manifest:
    """The manifest in ``folder``; a missing or damaged one is an :class:`InputError`."""
    path = Path(folder) / MANIFEST_NAME
    try:
        return Manifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise InputError("no manifest.json: was this folder written by `optout filter`?", path=path) from None
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(f"manifest.json is damaged ({type(exc).__name__})", path=path) from None


def new_manifest(
    spec: ExtractSpec,
    check_result: CheckResultLike | None,
    *,
    engine: str,
    tables: list[TableReport],
    people_removed: dict[str, int],
    input_scan: dict[str, Any] | None = None,
    kept: dict[str, dict[str, int]] | None = None,
) -> Manifest:
    """The manifest of a run that has just finished."""
    info = check_result.info if check_result is not None else None
    if spec.filtered:
        reason = None
    elif spec.legal_basis is not None:
        reason = f"exempt from the opt-out: {spec.legal_basis.value} ({spec.legal_reference})"
    else:
        reason = f"the opt-out does not apply to purpose {spec.purpose.value!r}"
    return Manifest(
        spec_name=spec.name,
        purpose=spec.purpose.value,
        legal_basis=spec.legal_basis.value if spec.legal_basis else None,
        legal_reference=spec.legal_reference,
        version_id=getattr(info, "id", None),
        checked_at=getattr(info, "checked_at", None),
        filtered_at=datetime.now(UTC),
        filtered=spec.filtered,
        not_filtered_reason=reason,
        engine=engine,
        tables=tuple(tables),
        people_removed=people_removed,
        input_scan=input_scan,
        kept=kept or {},
    )


def sha256_of(path: str | Path) -> str:
    """A file's sha256, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()
