"""What a message in our MESH inbox is, told from its headers (and, for a status message, its small JSON).

Pure: no network, no store. The refresh classifies every message before any body is read as a list:

- ``REPORT``: MESH's own report (``Mex-MessageType: REPORT``) about a message we sent: *non-delivery*
  (the service's mailbox did not collect it within MESH's 5 days, code 14, or could not take it:
  unregistered or deactivated mailbox, workflow not registered), *expired* (a report whose description
  says the message expired) or *error* (any other failure). Matched to our request by LocalId or by
  the linked message ID.
- ``STATUS``: a service status message, labelled JSON by its headers (content type or ``.json`` file
  name); its body is small and is read to tell ``JOB_CREATED`` from ``JOB_REJECTED``.
- ``REPLY``: a data message of the workflow carrying one of our LocalIds: the list, read only by the
  import (which still refuses a body that turns out to be a status: :func:`classify_body`).
- ``OTHER``: another workflow, a LocalId we never sent, or a status we cannot read: left untouched and
  counted.

The service's status JSON is read tolerantly (it is not formally specified): an object whose ``status``
(or ``jobStatus``/``state``) says created/accepted/received/processing is "job created"; one that says
rejected/failed/error/invalid is a rejection, with the reason from ``reason``/``message``/
``description``/``error``. Its plain-text rejection, "The file contains one or more invalid NHS
Numbers.", is a rejection too: one invalid number rejects the whole file. Reasons are cut to 300
characters and any run of digits is masked, so no number can travel on in a message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Container, Mapping
from dataclasses import dataclass
from enum import StrEnum

STATUS_READ_LIMIT = 64 * 1024  # a status message is a few hundred bytes; more is not a status
_BOM = b"\xef\xbb\xbf"
_CREATED = ("created", "accepted", "received", "processing", "submitted", "queued")
_REJECTED = ("reject", "fail", "error", "invalid")
_STATUS_KEYS = ("status", "jobstatus", "job_status", "state", "outcome")
_REASON_KEYS = ("reason", "message", "description", "error", "errordescription", "detail", "details")
_DIGITS = re.compile(r"\d{4,}")
_INVALID_FILE = re.compile(rb"^\s*the file contains one or more invalid nhs numbers", re.IGNORECASE)


class Kind(StrEnum):
    JOB_CREATED = "job created"
    JOB_REJECTED = "job rejected"
    REPORT = "report"
    STATUS = "status"  # labelled a status by its headers; its body decides created or rejected
    REPLY = "reply"
    OTHER = "other"


class Report(StrEnum):
    NON_DELIVERY = "non_delivery"
    EXPIRED = "expired"
    ERROR = "error"


@dataclass(frozen=True)
class Headers:
    """The MESH headers we read (lower-case names, without ``mex-``), as strings or None."""

    message_id: str
    message_type: str | None = None
    local_id: str | None = None
    workflow_id: str | None = None
    subject: str | None = None
    sender: str | None = None
    filename: str | None = None
    content_type: str | None = None
    status_code: str | None = None
    status_event: str | None = None
    status_description: str | None = None
    status_success: str | None = None
    linked_message_id: str | None = None

    @classmethod
    def from_http(cls, message_id: str, headers: Mapping[str, str]) -> Headers:
        """From HTTP response headers (any case; ``Mex-`` prefixed or not)."""
        plain = {name.lower().removeprefix("mex-"): value for name, value in headers.items()}
        content_type = plain.get("content-type")
        return cls(
            message_id=plain.get("messageid") or message_id,
            message_type=plain.get("messagetype"),
            local_id=plain.get("localid"),
            workflow_id=plain.get("workflowid"),
            subject=plain.get("subject"),
            sender=plain.get("from"),
            filename=plain.get("filename"),
            content_type=content_type if "json" in (content_type or "") else None,
            status_code=plain.get("statuscode"),
            status_event=plain.get("statusevent"),
            status_description=plain.get("statusdescription"),
            status_success=plain.get("statussuccess"),
            linked_message_id=plain.get("linkedmsgid"),
        )


@dataclass(frozen=True)
class Classified:
    """What one message is, for which request (LocalId), and why, in words without any number."""

    kind: Kind
    message_id: str
    local_id: str | None = None
    report: Report | None = None
    reason: str | None = None


def classify(
    headers: Headers,
    *,
    workflow_id: str,
    local_ids: Container[str],
    sent_message_ids: Container[str] = (),
) -> Classified:
    """Classify a message from its headers alone (never its body).

    ``local_ids`` are the LocalIds of our recorded requests; ``sent_message_ids`` the MESH message IDs
    we sent them as (a report may carry only the linked message ID).
    """
    ours = headers.local_id is not None and headers.local_id in local_ids
    if (headers.message_type or "").upper() == "REPORT":
        linked = headers.linked_message_id is not None and headers.linked_message_id in sent_message_ids
        if not (ours or linked):
            return Classified(Kind.OTHER, headers.message_id, headers.local_id, reason="a report about another message")
        return Classified(
            Kind.REPORT,
            headers.message_id,
            headers.local_id if ours else None,
            report=_report_kind(headers),
            reason=_report_reason(headers),
        )
    if headers.workflow_id and headers.workflow_id.upper() != workflow_id.upper():
        return Classified(Kind.OTHER, headers.message_id, headers.local_id, reason="another workflow")
    if not ours:
        return Classified(Kind.OTHER, headers.message_id, headers.local_id, reason="a LocalId we never sent")
    if headers.content_type or (headers.filename or "").lower().endswith(".json"):
        return Classified(Kind.STATUS, headers.message_id, headers.local_id)
    return Classified(Kind.REPLY, headers.message_id, headers.local_id)


def classify_body(message: Classified, head: bytes) -> Classified:
    """Refine a STATUS or REPLY from the first bytes of its body (a status message is read whole).

    A reply whose body is the service's JSON or its plain-text rejection is that status, not a list.
    """
    text = head.removeprefix(_BOM).lstrip()
    if _INVALID_FILE.match(text):
        reason = "the file contains one or more invalid NHS numbers (one invalid number rejects the whole file)"
        return Classified(Kind.JOB_REJECTED, message.message_id, message.local_id, reason=reason)
    if not text.startswith(b"{"):
        if message.kind is Kind.STATUS:
            return Classified(Kind.OTHER, message.message_id, message.local_id, reason="a status that is not JSON")
        return message
    try:
        document = json.loads(text[:STATUS_READ_LIMIT].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return Classified(Kind.OTHER, message.message_id, message.local_id, reason="a status that is not valid JSON")
    return _from_status(message, document if isinstance(document, dict) else {})


def _from_status(message: Classified, document: dict[str, object]) -> Classified:
    fields = {str(key).lower(): value for key, value in document.items()}
    status = next((str(fields[key]).lower() for key in _STATUS_KEYS if key in fields), "")
    reason = next((_safe(fields[key]) for key in _REASON_KEYS if fields.get(key)), None)
    if any(word in status for word in _REJECTED):
        return Classified(
            Kind.JOB_REJECTED, message.message_id, message.local_id, reason=reason or f"status {_safe(status)}"
        )
    if any(word in status for word in _CREATED):
        return Classified(Kind.JOB_CREATED, message.message_id, message.local_id, reason=reason)
    return Classified(Kind.OTHER, message.message_id, message.local_id, reason="a status we do not know")


def _report_kind(headers: Headers) -> Report:
    code = (headers.status_code or "").strip()
    description = (headers.status_description or "").lower()
    if "expir" in description:
        return Report.EXPIRED
    if code in {"12", "14", "17", "EPL-150", "EPL-151"} or "not collected" in description:
        return Report.NON_DELIVERY
    return Report.ERROR


def _report_reason(headers: Headers) -> str:
    parts = [f"MESH code {headers.status_code}" if headers.status_code else "", headers.status_description or ""]
    return _safe(": ".join(p for p in parts if p)) or "MESH reported a failure without a description"


def _safe(value: object) -> str:
    """A reason fit for logs and the page: short, and with every run of digits masked."""
    text = " ".join(str(value).split())[:300]
    return _DIGITS.sub(lambda m: "#" * len(m.group()), text)
