"""The disclosure ledger: one append-only, hash-chained entry per gated export ("no surprises").

It lives in the store's database so the record of what left sits beside the list it was checked against.
Triggers refuse UPDATE and DELETE; each entry holds the hash of the one before, so an edit that bypasses
the triggers (or the database altogether) breaks the chain and ``verify`` names the first bad entry.
It holds counts, hashes and names only: never an NHS number or a person key.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, TextIO

import numpy as np
import sqlalchemy as sa

from optout import config, db
from optout.errors import InputError, OptOutError
from optout.nhs_number import check_digit_ok

GENESIS = "0" * 64
_APPEND_ATTEMPTS = 5
_TEXT_FIELDS = (
    "extract",
    "purpose",
    "recipient",
    "legal_basis",
    "legal_reference",
    "dag_id",
    "task_id",
    "run_id",
    "data_docs",
)
_NUMBER_LIKE = re.compile(r"(?<!\d)(\d{3})[ -]?(\d{3})[ -]?(\d{4})(?!\d)")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

metadata = sa.MetaData()
table = sa.Table(
    "disclosure_ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("recorded_at", sa.String(40), nullable=False),
    sa.Column("dag_id", sa.String(250)),
    sa.Column("task_id", sa.String(250)),
    sa.Column("run_id", sa.String(250)),
    sa.Column("extract", sa.String(250), nullable=False),
    sa.Column("purpose", sa.String(40), nullable=False),
    sa.Column("legal_basis", sa.String(80)),
    sa.Column("legal_reference", sa.String(500)),
    sa.Column("recipient", sa.String(250), nullable=False),
    # Null for a disclosure copied unfiltered (direct care, exemption): it used no list version.
    sa.Column("version_id", sa.Integer),
    sa.Column("version_checked_at", sa.String(40)),
    sa.Column("version_age_seconds", sa.BigInteger),
    sa.Column("rows_in", sa.BigInteger, nullable=False),
    sa.Column("rows_out", sa.BigInteger, nullable=False),
    sa.Column("removed_rows", sa.Text, nullable=False),
    sa.Column("removed_people", sa.BigInteger, nullable=False),
    sa.Column("validation_ok", sa.Boolean, nullable=False),
    sa.Column("output_hashes", sa.Text, nullable=False),
    sa.Column("data_docs", sa.String(1000)),
    # The maximum age in force when the gate checked the list (a secondary use; null otherwise). Hashed
    # only when set, like ``kind`` and ``detail`` below.
    sa.Column("max_age_seconds", sa.BigInteger),
    # Null for a disclosure; otherwise what kind of event the entry records ("retention": a deletion),
    # with its counts and names in ``detail``. Both are hashed only when set, so the entries written
    # before these columns existed keep their hashes and the chain verifies across the change.
    sa.Column("kind", sa.String(40)),
    sa.Column("detail", sa.Text),
    # The columns the spec excluded from the leak scan, with reasons (JSON); hashed only when set, like kind.
    sa.Column("scan_excluded", sa.Text),
    # Distinct people in what was sent, as the passing proof counted them (null: not known, or an entry
    # written before this column existed); hashed only when set, like kind.
    sa.Column("people_out", sa.BigInteger),
    sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("entry_hash", sa.String(64), nullable=False),
)

_SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER IF NOT EXISTS disclosure_ledger_no_{op.lower()} BEFORE {op} ON disclosure_ledger
        BEGIN SELECT RAISE(ABORT, 'disclosure_ledger is append-only'); END"""
    for op in ("UPDATE", "DELETE")
]
_PG_FUNCTION = """CREATE OR REPLACE FUNCTION disclosure_ledger_refuse() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'disclosure_ledger is append-only'; END $$ LANGUAGE plpgsql"""
_PG_TRIGGERS = {
    "disclosure_ledger_no_change": "BEFORE UPDATE OR DELETE ON disclosure_ledger FOR EACH ROW",
    "disclosure_ledger_no_truncate": "BEFORE TRUNCATE ON disclosure_ledger FOR EACH STATEMENT",
}


class LedgerError(OptOutError, RuntimeError):
    """The ledger could not record an entry (exit 1): nothing was exported without one."""


@dataclass(frozen=True)
class Disclosure:
    """What one gated export sent, to whom, why, and against which list version."""

    extract: str
    purpose: str
    recipient: str
    version_id: int | None
    version_checked_at: datetime | None
    rows_in: int
    rows_out: int
    removed_rows: dict[str, int]
    removed_people: int
    validation_ok: bool
    output_hashes: dict[str, str]
    legal_basis: str | None = None
    legal_reference: str | None = None
    dag_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None
    data_docs: str | None = None
    # Columns the spec excluded from the leak scan: ``{"table", "column", "reason"}`` each (None: none).
    scan_excluded: list[dict[str, str]] | None = None
    max_age_seconds: int | None = None  # the limit the list was checked against at send time
    people_out: int | None = None  # distinct people in the outputs, by the validation's proof (None: unknown)
    # The list's age by the freshness rule, as the gate saw it (default: since checked_at, at recording);
    # read back as ``LedgerEntry.version_age_seconds``.
    version_age_seconds: int | None = None


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    recorded_at: datetime
    version_age_seconds: int | None
    disclosure: Disclosure
    prev_hash: str
    entry_hash: str = field(repr=False)


@dataclass(frozen=True)
class Event:
    """Something recorded in the ledger that is not a disclosure: ``kind`` (``retention``), what it was
    about, and counts or names (never a value from data)."""

    kind: str
    subject: str
    detail: dict[str, str | int]


@dataclass(frozen=True)
class EventEntry:
    id: int
    recorded_at: datetime
    event: Event


class Ledger:
    """The ``disclosure_ledger`` table in the store's database (created with its triggers on first use)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or config.store_url()
        self._engine = db.engine(self.url)
        self._ensure_schema()

    def append(self, d: Disclosure, *, now: datetime | None = None) -> LedgerEntry:
        """Record one disclosure at the end of the chain; concurrent appends retry, never fork."""
        _check_disclosure(d)
        recorded_at = _utc(now or datetime.now(UTC), "now")
        return _from_row(self._append(lambda entry_id, prev: _to_row(d, entry_id, recorded_at, prev)))

    def record_event(self, event: Event, *, now: datetime | None = None) -> int:
        """Record one event that is not a disclosure (such as a deletion under the retention rule) in the
        same chain; returns its entry id. Names and counts only, refused like a disclosure's otherwise."""
        for name, value in (("kind", event.kind), ("subject", event.subject), *event.detail.items()):
            if _holds_nhs_number(str(value)):
                raise InputError(
                    "looks like it holds an NHS number; the ledger records names and counts only", field=name
                )
        recorded_at = _utc(now or datetime.now(UTC), "now")
        return int(self._append(lambda entry_id, prev: _event_row(event, entry_id, recorded_at, prev))["id"])

    def events(self, kind: str | None = None, since: datetime | None = None) -> list[EventEntry]:
        """Recorded events (not disclosures), oldest first."""
        query = sa.select(table).where(table.c.kind.is_not(None)).order_by(table.c.id)
        if kind is not None:
            query = query.where(table.c.kind == kind)
        if since is not None:
            query = query.where(table.c.recorded_at >= _iso(_utc(since, "since")))
        with db.transaction(self._engine, snapshot=True) as conn:
            rows = conn.execute(query).all()
        return [
            EventEntry(
                r.id, datetime.fromisoformat(r.recorded_at), Event(r.kind, r.extract, json.loads(r.detail or "{}"))
            )
            for r in rows
        ]

    def _append(self, make_row: Callable[[int, str], dict[str, Any]]) -> dict[str, Any]:
        for _ in range(_APPEND_ATTEMPTS):
            try:
                with db.transaction(self._engine, write=True) as conn:
                    last = conn.execute(sa.select(table.c.id, table.c.entry_hash).order_by(table.c.id.desc()).limit(1))
                    row = last.first()
                    prev_id, prev_hash = (row.id, row.entry_hash) if row else (0, GENESIS)
                    values = make_row(prev_id + 1, prev_hash)
                    conn.execute(table.insert().values(**values))
            except sa.exc.IntegrityError:  # another process appended the same id first: read the chain again
                continue
            return values
        raise LedgerError(f"could not append to the ledger after {_APPEND_ATTEMPTS} attempts; rerun the export")

    def entries(self, since: datetime | None = None, limit: int | None = None) -> list[LedgerEntry]:
        """Entries recorded at or after ``since``, oldest first (the newest ``limit`` if given)."""
        query = sa.select(table).where(table.c.kind.is_(None)).order_by(table.c.id.desc())
        if since is not None:
            query = query.where(table.c.recorded_at >= _iso(_utc(since, "since")))
        if limit is not None:
            query = query.limit(limit)
        with db.transaction(self._engine, snapshot=True) as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        return [_from_row(r) for r in reversed(rows)]

    def entry(self, entry_id: int) -> LedgerEntry | None:
        with db.transaction(self._engine) as conn:
            row = conn.execute(sa.select(table).where(table.c.id == entry_id, table.c.kind.is_(None))).first()
        return _from_row(dict(row._mapping)) if row else None

    def verify(self) -> tuple[bool, int | None, str]:
        """Walk the chain: ids consecutive, each entry's hash recomputed, each linked to the one before."""
        expected_prev, expected_id, count = GENESIS, 1, 0
        for row in self._rows():
            if row["id"] != expected_id:
                return False, row["id"], f"entry {expected_id} is missing: the chain jumps to {row['id']}"
            if row["prev_hash"] != expected_prev:
                return False, row["id"], f"entry {row['id']} does not link to entry {row['id'] - 1}"
            if _hash(row) != row["entry_hash"]:
                return False, row["id"], f"entry {row['id']} was changed after it was recorded"
            expected_prev, expected_id, count = row["entry_hash"], expected_id + 1, count + 1
        return True, None, f"{count} {'entry' if count == 1 else 'entries'}, chain intact"

    def export_csv(self, since: datetime | None, stream: TextIO) -> int:
        """Write entries (oldest first) as CSV for the governance team; returns the number of rows."""
        writer = csv.DictWriter(stream, fieldnames=[c.name for c in table.columns])
        writer.writeheader()
        count = 0
        for entry in self.entries(since):
            writer.writerow(_to_row(entry.disclosure, entry.id, entry.recorded_at, entry.prev_hash))
            count += 1
        return count

    def dispose(self) -> None:
        self._engine.dispose()

    def _rows(self) -> Iterator[dict[str, Any]]:
        with db.transaction(self._engine, snapshot=True) as conn:
            for r in conn.execute(sa.select(table).order_by(table.c.id)):
                yield dict(r._mapping)

    def _ensure_schema(self) -> None:
        with db.transaction(self._engine, write=True) as conn:
            db.serialise(conn, table.name)
            metadata.create_all(conn)
            present_columns = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
            added = {
                "kind": "VARCHAR(40)",
                "detail": "TEXT",
                "scan_excluded": "TEXT",
                "max_age_seconds": "BIGINT",
                "people_out": "BIGINT",
            }
            for column, kind in added.items():  # a ledger made before these columns existed
                if column not in present_columns:
                    conn.execute(sa.text(f"ALTER TABLE disclosure_ledger ADD COLUMN {column} {kind}"))
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text(_PG_FUNCTION))
                present = set(
                    conn.execute(
                        sa.text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'disclosure_ledger'::regclass")
                    ).scalars()
                )
                for name, when in _PG_TRIGGERS.items():
                    if name not in present:
                        conn.execute(
                            sa.text(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION disclosure_ledger_refuse()")
                        )
            else:
                for statement in _SQLITE_TRIGGERS:
                    conn.execute(sa.text(statement))


def _check_disclosure(d: Disclosure) -> None:
    """Fail closed on anything that could smuggle a person into the ledger."""
    for name in _TEXT_FIELDS:
        value = getattr(d, name)
        if value is not None and _holds_nhs_number(str(value)):
            raise InputError("looks like it holds an NHS number; the ledger records names and counts only", field=name)
    for name, digest in d.output_hashes.items():
        if not _SHA256.match(digest):
            raise InputError("is not a lower-case hex sha256", field=f"output_hashes[{name}]")
        if _holds_nhs_number(name):
            raise InputError("file name looks like it holds an NHS number", field="output_hashes")
    for reason, count in d.removed_rows.items():
        if not isinstance(count, int) or count < 0 or _holds_nhs_number(reason):
            raise InputError("must map reason names to row counts", field=f"removed_rows[{reason}]")
    if d.people_out is not None and (not isinstance(d.people_out, int) or d.people_out < 0):
        raise InputError("must be a count of people", field="people_out")
    if any(_holds_nhs_number(str(text)) for item in d.scan_excluded or [] for text in item.values()):
        raise InputError("looks like it holds an NHS number; the ledger records names only", field="scan_excluded")


def _holds_nhs_number(text: str) -> bool:
    candidates = [int("".join(m.groups())) for m in _NUMBER_LIKE.finditer(text)]
    return bool(candidates) and bool(check_digit_ok(np.array(candidates, dtype=np.int64)).any())


def _to_row(d: Disclosure, entry_id: int, recorded_at: datetime, prev_hash: str) -> dict[str, Any]:
    values = asdict(d)
    checked = _utc(d.version_checked_at) if d.version_checked_at is not None else None
    values["version_checked_at"] = _iso(checked) if checked is not None else None
    values["removed_rows"] = _canonical(d.removed_rows)
    values["output_hashes"] = _canonical(d.output_hashes)
    values["scan_excluded"] = _canonical(d.scan_excluded) if d.scan_excluded else None
    if d.version_age_seconds is None:
        values["version_age_seconds"] = int((recorded_at - checked).total_seconds()) if checked is not None else None
    values.update(id=entry_id, recorded_at=_iso(recorded_at), prev_hash=prev_hash)
    values["entry_hash"] = _hash(values)
    return values


def _event_row(event: Event, entry_id: int, recorded_at: datetime, prev_hash: str) -> dict[str, Any]:
    """An event in the disclosure columns: its kind as the purpose, its subject as the extract, no rows."""
    values: dict[str, Any] = {
        "id": entry_id,
        "recorded_at": _iso(recorded_at),
        "kind": event.kind,
        "detail": _canonical(event.detail),
        "extract": event.subject,
        "purpose": event.kind,
        "recipient": "",
        "rows_in": 0,
        "rows_out": 0,
        "removed_rows": "{}",
        "removed_people": 0,
        "validation_ok": False,
        "output_hashes": "{}",
        "prev_hash": prev_hash,
    }
    values["entry_hash"] = _hash(values)
    return values


def _from_row(row: dict[str, Any]) -> LedgerEntry:
    names = {f.name for f in fields(Disclosure)} - {"version_age_seconds"}  # the entry's, as recorded
    values = {k: v for k, v in row.items() if k in names}
    checked = row["version_checked_at"]
    values["version_checked_at"] = datetime.fromisoformat(checked) if checked is not None else None
    values["removed_rows"] = json.loads(row["removed_rows"])
    values["output_hashes"] = json.loads(row["output_hashes"])
    values["scan_excluded"] = json.loads(row["scan_excluded"]) if row.get("scan_excluded") else None
    values["validation_ok"] = bool(row["validation_ok"])
    return LedgerEntry(
        id=row["id"],
        recorded_at=datetime.fromisoformat(row["recorded_at"]),
        version_age_seconds=row["version_age_seconds"],
        disclosure=Disclosure(**values),
        prev_hash=row["prev_hash"],
        entry_hash=row["entry_hash"],
    )


def _hash(row: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of every column but the hash itself (booleans as booleans)."""
    payload = {c.name: row.get(c.name) for c in table.columns if c.name != "entry_hash"}
    payload["validation_ok"] = bool(payload["validation_ok"])
    for name in (
        "kind",
        "detail",
        "scan_excluded",
        "max_age_seconds",
        "people_out",
    ):  # hashed only when set: older entries keep theirs
        if payload[name] is None:
            del payload[name]
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _utc(moment: datetime, name: str = "version_checked_at") -> datetime:
    if moment.tzinfo is None:
        raise InputError("must carry a time zone", field=name)
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")
