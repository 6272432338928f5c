"""The store's record of what was validated, which the gate compares every send with.

``result.json`` beside an extract is a convenience for people; DAG code can write it, and the manifest
and outputs too. So each validation also appends an event to the hash-chained, append-only ledger in
the store: which folder, which manifest (its sha256), pass or fail, the list version. The gate sends
only a folder whose current manifest is the one the store's newest record for that folder passed;
the manifest in turn holds every output's sha256, which the gate re-hashes.

Hashes are stored in base32 (letters and the digits 2-7), so no run of them can look like an NHS number
to the ledger's guard.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from optout.errors import VerificationFailed

KIND = "validation"


def record_validation(
    out_dir: str | Path,
    *,
    extract: str,
    manifest_sha256: str,
    ok: bool,
    version_id: int | None,
    url: str | None = None,
    people_out: int | None = None,
) -> int:
    """Append one validation of ``out_dir`` to the store's ledger; returns the entry id.

    :param people_out: the distinct people the passing proof counted in the outputs (None: not known);
        the gate carries it to the disclosure, for the data uses register.
    """
    from optout.ledger import Event, Ledger

    detail: dict[str, str | int] = {
        "folder": _folder(out_dir),
        "manifest": _b32(bytes.fromhex(manifest_sha256)),
        "ok": int(ok),
        "version_id": -1 if version_id is None else int(version_id),
    }
    if people_out is not None:  # absent, not null, when unknown: older records look the same
        detail["people_out"] = int(people_out)
    ledger = Ledger(url)
    try:
        return ledger.record_event(Event(KIND, extract, detail))
    finally:
        ledger.dispose()


def require_recorded(out_dir: str | Path, manifest_sha256: str, *, url: str | None = None) -> int | None:
    """The store's newest validation of ``out_dir`` passed, for exactly this manifest; returns the people it
    counted in the outputs (None when the record has no count: older records, or not known).

    :raises VerificationFailed: never validated, failed, or the manifest is not the one validated.
    """
    from optout.ledger import Ledger

    folder = _folder(out_dir)
    ledger = Ledger(url)
    try:
        records = [e.event.detail for e in ledger.events(kind=KIND) if e.event.detail.get("folder") == folder]
    finally:
        ledger.dispose()
    if not records:
        raise VerificationFailed(f"the store has no validation of {out_dir}: run the validation before sending")
    last = records[-1]
    if not last.get("ok"):
        raise VerificationFailed(f"the store records that {out_dir} failed validation: do not send it")
    if last.get("manifest") != _b32(bytes.fromhex(manifest_sha256)):
        raise VerificationFailed(
            f"{out_dir}: the manifest is not the one the store recorded as validated (the extract, its manifest "
            "or its validation result was rewritten after validation); filter and validate again"
        )
    people = last.get("people_out")
    return int(people) if people is not None else None


def _folder(out_dir: str | Path) -> str:
    return _b32(hashlib.sha256(str(Path(out_dir).resolve()).encode()).digest())


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()
