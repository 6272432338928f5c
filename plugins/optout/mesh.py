"""The request/reply conversation with NHS England's "Check for National Data Opt-outs" service over MESH.

A check is one MESH message to the service's mailbox, workflow ``SPINE_NTT_UPHOLDING``, with a Subject
and a LocalId that we make unique per request. The service first sends back a small JSON "job created"
message, then the reply file; both carry our LocalId, which is how a reply is matched to its request
(several requests may be in flight; other messages in the inbox are left alone).

Size: the whole cohort goes as one message, 12 bytes per NHS number (1,000,000 people is 12 MB).
mesh-client splits it into chunks of at most 75 MiB (MESH's chunk limit is 100 MB) and MESH accepts a
message of up to 20 GB through the API, so the ceiling is about 1.6 billion numbers: MESH is never the
limit for a real cohort. The reply is streamed to disk and parsed in blocks, so memory stays bounded.

MESH's own operations (settings, connecting, send, list, headers, download, acknowledge) are
:mod:`optout.mesh_transport`'s; this module decides what to send and what each message in the inbox
means for our requests. Nothing here logs a number: only counts, message IDs and LocalIds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optout import config, inbox, ndop
from optout.errors import InputError, OptOutError, SuspiciousReplyError
from optout.mesh_transport import (
    WORKFLOW_ID,
    MeshSettings,
    acknowledge,
    check_reference,
    download,
    handshake,
    headers,
    list_inbox,
    new_local_id,
    read_status,
    send_file,
)
from optout.store import PENDING

if TYPE_CHECKING:
    from mesh_client import MeshClient

    from optout.quarantine import Thresholds
    from optout.store import Store, VersionInfo

log = logging.getLogger(__name__)


class ServiceRejectedError(InputError):
    """The national service rejected the request (one invalid number rejects the whole file)."""


class MeshReportError(InputError):
    """MESH reported that our request was not delivered, expired uncollected, or failed."""


@dataclass
class InboxCheck:
    """What one look at the inbox found for our requests: the reply to wait for, and what else was there."""

    reply: str | None = None
    job_created: int = 0
    others: int = 0
    duplicates: list[str] = field(default_factory=list)
    late: list[tuple[str, str]] = field(default_factory=list)  # (LocalId, message ID) of older requests


def check_inbox(
    client: MeshClient,
    store: Store,
    local_id: str | None,
    *,
    workflow_id: str = WORKFLOW_ID,
    sent_message_id: str | None = None,
) -> InboxCheck:
    """Classify every inbox message from its headers and act on what concerns our requests.

    "Job created" is acknowledged. A rejection or a MESH report fails its request in the store (with
    the reason) and is acknowledged; for ``local_id`` it raises :class:`ServiceRejectedError` or
    :class:`MeshReportError`. A reply to a request already answered is a duplicate: acknowledged and
    recorded, never imported. Replies to older pending requests are returned as ``late`` (see
    :func:`collect_late_replies`); the reply to ``local_id`` as ``reply``. Everything else is left in
    the inbox and counted. No body is read but a status message's few bytes.
    """
    found = InboxCheck()
    seen = [h for h in (headers(client, mid) for mid in list_inbox(client, None)) if h is not None]
    requests = store.find_requests([h.local_id for h in seen if h.local_id])
    for item in seen:
        message = inbox.classify(
            item,
            workflow_id=workflow_id,
            local_ids=requests,
            sent_message_ids={sent_message_id} if sent_message_id else set(),
        )
        if message.kind is inbox.Kind.STATUS:
            message = inbox.classify_body(message, read_status(client, message.message_id))
        request = requests.get(message.local_id or local_id or "")
        if message.kind is inbox.Kind.OTHER or request is None:
            found.others += 1
        elif message.kind is inbox.Kind.JOB_CREATED:
            log.info(
                "MESH message %s is the service's 'job created' notice for %s: acknowledged",
                item.message_id,
                request.local_id,
            )
            acknowledge(client, message.message_id)
            found.job_created += 1
        elif message.kind in (inbox.Kind.JOB_REJECTED, inbox.Kind.REPORT):
            _fail(client, store, request, message, current=request.local_id == local_id)
        elif request.status != PENDING:
            log.warning(
                "MESH message %s repeats the reply to %s (version %d is %s): acknowledged, not imported",
                message.message_id,
                request.local_id,
                request.id,
                request.status,
            )
            acknowledge(client, message.message_id)
            found.duplicates.append(message.message_id)
        elif request.local_id == local_id:
            found.reply = found.reply or message.message_id
        else:
            found.late.append((request.local_id, message.message_id))
    if found.others:
        log.info("%d other message(s) in the inbox were left untouched", found.others)
    return found


def _fail(client: MeshClient, store: Store, request: VersionInfo, message: inbox.Classified, *, current: bool) -> None:
    what = "the service rejected" if message.kind is inbox.Kind.JOB_REJECTED else f"MESH reported ({message.report})"
    reason = f"{what} request {request.local_id}: {message.reason}"
    if request.status == PENDING:
        store.fail_request(request.id, reason)
    acknowledge(client, message.message_id)
    log.error("%s; version %d is failed and will never be used", reason, request.id)
    if current:
        error = ServiceRejectedError if message.kind is inbox.Kind.JOB_REJECTED else MeshReportError
        raise error(f"{reason}. Nothing was published; the previous version stays current")


def find_reply(client: MeshClient, store: Store, local_id: str, *, workflow_id: str = WORKFLOW_ID) -> str | None:
    """The message ID of the reply to ``local_id``, or None while it has not come (see :func:`check_inbox`)."""
    return check_inbox(client, store, local_id, workflow_id=workflow_id).reply


@dataclass(frozen=True)
class SentRequest:
    """A request on its way: everything a later step (or XCom) needs, and no number."""

    version_id: int
    local_id: str
    message_id: str
    cohort_count: int
    request_sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "local_id": self.local_id,
            "message_id": self.message_id,
            "cohort_count": self.cohort_count,
            "request_sha256": self.request_sha256,
        }


def send_request(
    client: MeshClient,
    store: Store,
    cohort: np.ndarray,
    *,
    settings: MeshSettings,
    local_id: str | None = None,
    subject: str | None = None,
    source: str = "",
) -> SentRequest:
    """Build the request file from ``cohort`` (valid numbers only), record it pending, send it.

    It is recorded before it is sent: a reply can then always be matched, and a send that fails leaves
    only a pending version that never becomes current. A late reply to the previous request is
    collected first (:func:`collect_late_replies`), while that request is still the newest.
    """
    local_id = check_reference(local_id or new_local_id(settings.mailbox), "local_id")
    path = replies_dir() / f"{local_id}.request.dat"
    try:
        # Written piece by piece and sent from the file: the whole request is never in memory.
        digest = ndop.write_request(path, cohort)
        handshake(client)  # wrong credentials fail here, before anything is recorded
        collect_late_replies(client, store, workflow_id=settings.workflow_id)  # while the last request is newest
        info = store.record_request(cohort, local_id=local_id, source=source, request_sha256=digest)
        with open(path, "rb") as data:
            message_id = send_file(
                client,
                settings.service_mailbox,
                data,
                local_id=local_id,
                subject=subject or local_id,
                workflow_id=settings.workflow_id,
                max_chunk_size=settings.chunk_size,
            )
    finally:
        path.unlink(missing_ok=True)
    log.info(
        "sent request %s (%d NHS numbers, version %d) to %s as MESH message %s",
        local_id,
        info.cohort_count,
        info.id,
        settings.service_mailbox,
        message_id,
    )
    return SentRequest(info.id, local_id, message_id, info.cohort_count, info.request_sha256)


def replies_dir() -> Path:
    """Where replies land while they are imported, and where quarantined ones stay (owner-only)."""
    folder = config.data_dir() / "replies"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def import_reply(
    store: Store,
    version_id: int,
    reply: ndop.Source,
    *,
    name: str | None = None,
    checked_at: datetime | None = None,
    thresholds: Thresholds | None = None,
) -> VersionInfo:
    """Parse a reply against the request recorded as ``version_id`` and import it with the store's gates.

    Its age counts from its request (``checked_at`` defaults to the request's time): the service checked
    some time after we asked, and we cannot know when, so the list is taken to be as old as the question.
    Raises :class:`InputError` (malformed, or a number never requested; nothing recorded) or
    :class:`SuspiciousReplyError` (kept as a quarantined version for a governance officer).
    """
    pending = store.load(version_id)
    cleared = ndop.parse_reply(reply, pending.cohort, name=name)
    return store.import_reply(
        version_id, cleared, checked_at=checked_at or pending.info.requested_at, thresholds=thresholds
    )


class ReplyNotReady(RuntimeError):
    """The message we took for the reply was the service's "job created" notice: the task retries later."""


def receive_reply(
    client: MeshClient,
    store: Store,
    local_id: str,
    message_id: str,
    *,
    thresholds: Thresholds | None = None,
) -> VersionInfo:
    """Download the reply, import it, then acknowledge it.

    A published reply's file is deleted (the store holds the numbers). A quarantined one is kept
    owner-only in :func:`replies_dir` for inspection. A malformed reply is deleted and left
    unacknowledged in MESH (until MESH expires it) so it can be fetched again to investigate. A reply to
    a request already answered is a duplicate: acknowledged, never imported twice. A body that is the
    service's status rather than a list is handled as that status (:func:`optout.inbox.classify_body`).
    """
    pending = store.find_request(local_id=local_id)
    if pending is None:
        raise InputError(f"no request with LocalId {local_id} was recorded in this store", field="local_id")
    if pending.status != PENDING:
        log.warning(
            "MESH message %s repeats the reply to %s (version %d is %s): acknowledged, not imported",
            message_id,
            local_id,
            pending.id,
            pending.status,
        )
        acknowledge(client, message_id)
        return pending
    path = replies_dir() / f"{local_id}.dat"
    size = download(client, message_id, path)
    with open(path, "rb") as handle:
        head = handle.read(inbox.STATUS_READ_LIMIT)
    message = inbox.classify_body(inbox.Classified(inbox.Kind.REPLY, message_id, local_id), head)
    if message.kind is not inbox.Kind.REPLY:
        path.unlink(missing_ok=True)
        if message.kind is inbox.Kind.JOB_CREATED:
            acknowledge(client, message_id)
            raise ReplyNotReady(
                f"MESH message {message_id} was the 'job created' notice for {local_id}; the reply is still to come"
            )
        if message.kind is inbox.Kind.JOB_REJECTED:
            _fail(client, store, pending, message, current=True)
        raise InputError(f"MESH message {message_id} is {message.reason}, not the reply; it is left in the inbox")
    try:
        info = import_reply(store, pending.id, path, name=f"MESH message {message_id}", thresholds=thresholds)
    except SuspiciousReplyError as exc:
        acknowledge(client, message_id)
        raise SuspiciousReplyError(f"{exc}. The reply file is kept for that at {path} (owner-only)") from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    path.unlink(missing_ok=True)
    acknowledge(client, message_id)
    log.info("imported reply %s (%d bytes): version %d is %s", local_id, size, info.id, info.status)
    return info


def collect_late_replies(
    client: MeshClient, store: Store, *, workflow_id: str = WORKFLOW_ID, thresholds: Thresholds | None = None
) -> list[VersionInfo]:
    """Import replies that came after their wait ended, if their request is still the newest one.

    Run before a new request is recorded. A late reply to the newest request is imported as any reply
    (its age counts from its request, so an old answer is never taken for a fresh one); a late reply to
    an older request is acknowledged and its request failed as superseded. A late reply that is
    refused (malformed, quarantined) is reported in the log and does not stop tonight's request.
    """
    found = check_inbox(client, store, None, workflow_id=workflow_id)
    newest = store.newest_request()
    imported = []
    for local_id, message_id in found.late:
        request = store.find_request(local_id=local_id)
        if request is None:
            continue
        why = None
        if newest is not None and request.id != newest.id:
            why = f"superseded: its reply came after request {newest.local_id} was sent"
        elif request.age() >= config.max_age():  # as old as its request: it would be stale on arrival
            why = f"too old: its reply came {config.format_duration(request.age())} after the request"
        if why:
            acknowledge(client, message_id)
            store.fail_request(request.id, f"{why}, and was not imported")
            log.warning("late reply to %s (version %d) acknowledged, not imported: %s", local_id, request.id, why)
            continue
        try:
            imported.append(receive_reply(client, store, local_id, message_id, thresholds=thresholds))
            log.info("late reply to %s imported: version %d", local_id, request.id)
        except (OptOutError, ReplyNotReady) as exc:
            log.warning("late reply to %s was not imported: %s", local_id, exc)
    return imported
