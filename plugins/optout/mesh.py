"""Talk to NHS England's "Check for National Data Opt-outs" service over MESH, through ``mesh_client``.

A check is one MESH message to the service's mailbox, workflow ``SPINE_NTT_UPHOLDING``, with a Subject
and a LocalId that we make unique per request. The service first sends back a small JSON "job created"
message, then the reply file; both carry our LocalId, which is how a reply is matched to its request
(several requests may be in flight; other messages in the inbox are left alone).

Size: the whole cohort goes as one message, 12 bytes per NHS number (1,000,000 people is 12 MB).
mesh-client splits it into chunks of at most 75 MiB (MESH's chunk limit is 100 MB) and MESH accepts a
message of up to 20 GB through the API, so the ceiling is about 1.6 billion numbers: MESH is never the
limit for a real cohort. The reply is streamed to disk and parsed in blocks, so memory stays bounded.

Nothing here logs a number: only counts, message IDs and LocalIds.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlparse

import numpy as np

from optout import config, inbox, ndop
from optout.atomic import atomic_file
from optout.errors import InputError, OptOutError, SuspiciousReplyError
from optout.store import PENDING

if TYPE_CHECKING:
    from mesh_client import MeshClient

    from optout.quarantine import Thresholds
    from optout.store import Store, VersionInfo

log = logging.getLogger(__name__)

WORKFLOW_ID = "SPINE_NTT_UPHOLDING"
# The service drops messages whose Subject or LocalId hold anything but letters, digits, "-" and "_".
_SAFE_REFERENCE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_READ_BLOCK = 4 * 1024 * 1024
_RETRYABLE_4XX = (408, 425, 429)


class MeshAuthError(InputError):
    """MESH refused our credentials or certificate: fix the connection, retrying cannot help."""


class MeshRejectedError(InputError):
    """MESH refused the request itself (a 4xx other than authentication): retrying cannot help."""


@dataclass(frozen=True)
class MeshSettings:
    """Where and as whom to connect. ``password`` and ``shared_key`` are kept out of ``repr``."""

    url: str
    mailbox: str
    password: str = field(repr=False)
    service_mailbox: str
    shared_key: str | None = field(default=None, repr=False)
    client_cert: str | None = None
    client_key: str | None = None
    ca_cert: str | None = None
    workflow_id: str = WORKFLOW_ID
    timeout: float = 600.0
    chunk_size: int | None = None  # bytes per MESH chunk we send; None: mesh-client's 75 MiB

    def __post_init__(self) -> None:
        for name in ("url", "mailbox", "password", "service_mailbox"):
            if not getattr(self, name):
                raise InputError(f"{name} is required for a MESH connection", field=name)
        parsed = urlparse(self.url)
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise InputError("the MESH URL must look like https://host[:port]", field="host")
        if parsed.scheme == "http" and not _is_loopback(parsed.hostname):
            raise InputError("plain http is only allowed to a local sandbox on loopback; use https", field="host")
        if bool(self.client_cert) != bool(self.client_key):
            raise InputError("client_cert and client_key go together (the MESH client certificate and its key)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def connect(settings: MeshSettings, *, max_retries: int = 3) -> MeshClient:
    """A ``MeshClient`` for the settings; known NHS endpoints get their CA bundle from mesh-client."""
    from mesh_client import MeshClient

    cert = (settings.client_cert, settings.client_key) if settings.client_cert and settings.client_key else None
    client = MeshClient(
        settings.url,
        settings.mailbox,
        settings.password,
        shared_key=settings.shared_key.encode() if settings.shared_key else None,
        cert=cert,  # type: ignore[arg-type]
        verify=settings.ca_cert or None,
        max_retries=max_retries,
        timeout=settings.timeout,
        application_name="optout",
    )
    if _is_loopback(urlparse(settings.url).hostname or ""):
        # mesh-client asks for gzip, and mesh-sandbox then gzips every chunk it serves at level 9 (about
        # 1 MB/s a core): on loopback that buys nothing, so the local sandbox is asked for plain bytes.
        client._session.headers["Accept-Encoding"] = "identity"
    return client


def handshake(client: MeshClient) -> None:
    """Authenticate once; raises :class:`MeshAuthError` when MESH refuses us."""
    with mesh_errors("handshake"):
        client.handshake()


def new_local_id(mailbox: str, now: datetime | None = None) -> str:
    """``MAILBOX-YYYYMMDDHHMMSS-xxxxxxxx``: unique, sortable, and only characters the service accepts."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{mailbox}-{moment:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}"


def _check_reference(value: str, name: str) -> str:
    if not _SAFE_REFERENCE.match(value):
        raise InputError("use 1-100 letters, digits, '-' or '_' (the service ignores other messages)", field=name)
    return value


@contextlib.contextmanager
def mesh_errors(action: str) -> Iterator[None]:
    """Turn MESH's refusals into our errors; transport errors (worth retrying) pass through unchanged."""
    from mesh_client import MeshError
    from requests import HTTPError

    try:
        yield
    except HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (401, 403):
            raise MeshAuthError(
                f"MESH refused the {action} (HTTP {status}): check the mailbox, password, shared key "
                "and client certificate of the connection"
            ) from None
        if 400 <= status < 500 and status not in _RETRYABLE_4XX:
            raise MeshRejectedError(f"MESH refused the {action} (HTTP {status})") from None
        raise
    except MeshError as exc:
        raise MeshRejectedError(f"MESH refused the {action}: {exc.args[0] if exc.args else 'no reason'}") from None


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying later: the network, timeouts, MESH busy or down (429/5xx)."""
    from requests import ConnectionError, HTTPError, Timeout
    from urllib3.exceptions import HTTPError as Urllib3Error

    if isinstance(exc, HTTPError) and exc.response is not None:
        return exc.response.status_code >= 500 or exc.response.status_code in _RETRYABLE_4XX
    return isinstance(exc, (ConnectionError, Timeout, Urllib3Error, OSError)) and not isinstance(exc, OptOutError)


def send_file(
    client: MeshClient,
    recipient: str,
    data: bytes | BinaryIO,
    *,
    local_id: str,
    subject: str,
    workflow_id: str = WORKFLOW_ID,
    filename: str | None = None,
    content_type: str | None = None,
    max_chunk_size: int | None = None,
) -> str:
    """Send one message (mesh-client chunks it, ``max_chunk_size`` bytes a chunk); returns its MESH message ID.

    ``data`` may be bytes or a binary file object: mesh-client reads a file chunk by chunk.
    """
    _check_reference(local_id, "local_id")
    _check_reference(subject, "subject")
    extra: dict[str, Any] = {"content_type": content_type} if content_type else {}
    with mesh_errors("send"):
        return str(
            client.send_message(
                recipient,
                data,
                max_chunk_size=max_chunk_size,
                workflow_id=workflow_id,
                subject=subject,
                local_id=local_id,
                filename=filename or f"{local_id}.dat",
                **extra,
            )
        )


def list_inbox(client: MeshClient, workflow_id: str | None = WORKFLOW_ID) -> list[str]:
    """Message IDs waiting in our inbox, optionally only those of one workflow."""
    with mesh_errors("inbox listing"):
        return list(client.iterate_message_ids(workflow_filter=workflow_id))


def headers(client: MeshClient, message_id: str) -> inbox.Headers | None:
    """A message's headers only (MESH's ``HEAD`` of the message): no body is downloaded.

    None when the message has gone meanwhile (another process acknowledged it, or it expired).
    mesh-client has no call for this, so its authenticated session is used directly.
    """
    from urllib.parse import quote

    with mesh_errors("header check"):
        response = client._session.head(f"{client.mailbox_url}/inbox/{quote(message_id)}", timeout=client._timeout)
        if response.status_code in (404, 410):
            return None
        response.raise_for_status()
    return inbox.Headers.from_http(message_id, response.headers)


def read_status(client: MeshClient, message_id: str) -> bytes:
    """The first bytes of a status message (a few hundred bytes; never more than 64 KiB are read)."""
    with mesh_errors("download"):
        message = client.retrieve_message(message_id)
        try:
            return bytes(message.read(inbox.STATUS_READ_LIMIT))
        finally:
            message.close()


def download(client: MeshClient, message_id: str, path: str | Path) -> int:
    """Stream a message to ``path`` (atomic, owner-only); returns its size in bytes."""
    size = 0
    with mesh_errors("download"):
        message = client.retrieve_message(message_id)
        try:
            with atomic_file(path, "wb") as handle:
                while block := message.read(_READ_BLOCK):
                    handle.write(block)  # type: ignore[attr-defined]
                    size += len(block)
        finally:
            message.close()
    return size


def acknowledge(client: MeshClient, message_id: str) -> None:
    """Tell MESH we have the message; it leaves the inbox."""
    with mesh_errors("acknowledgement"):
        client.acknowledge_message(message_id)


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
    local_id = _check_reference(local_id or new_local_id(settings.mailbox), "local_id")
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
