"""MESH itself, through ``mesh_client``: where and as whom to connect, and one call per MESH operation.

Settings (``MeshSettings``: https only, except to a loopback sandbox), the client (``connect``,
``handshake``), and the operations the request/reply conversation (:mod:`optout.mesh`) is made of:
send a message, list the inbox, read a message's headers or a status message's first bytes, stream a
message to disk, acknowledge it. MESH's refusals become our errors (``mesh_errors``: authentication
and other 4xx cannot be retried); ``is_transient`` says which errors are worth retrying.

Nothing here logs a number, a password or a key: only message IDs and LocalIds.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlparse

from optout import inbox
from optout.atomic import atomic_file
from optout.errors import InputError, OptOutError

if TYPE_CHECKING:
    from mesh_client import MeshClient


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


def check_reference(value: str, name: str) -> str:
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
    check_reference(local_id, "local_id")
    check_reference(subject, "subject")
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
