"""A stand-in for the national "Check for National Data Opt-outs" service, on a mesh-sandbox mailbox.

It does what the real service does, as far as we can see it from our mailbox: for each request in
its inbox (workflow ``SPINE_NTT_UPHOLDING``) it sends a JSON status message ("job created"), then a
reply with the request's numbers minus those in an opt-out list, both carrying the request's LocalId.
A request that is not a valid request file gets the one-line error the real service sends. Status
messages go as ``application/json`` named ``LOCALID.json``: ``{"status": "job created", "localId": ...}``
or ``{"status": "rejected", "localId": ..., "reason": ...}``.

Behaviours besides ``normal``: ``crlf``, ``malformed`` and ``unrequested`` replies; ``silent`` (never
replies); ``rejected`` (the JSON rejection the service sends for a file with an invalid number);
``non_delivery`` (MESH's non-delivery report about the request, through mesh-sandbox's admin API);
``late`` (replies are held until :meth:`StandIn.release`); ``duplicate`` (the reply is sent twice);
``unknown_local_id`` (first a reply carrying a LocalId nobody sent); ``chunked`` (the reply in MESH
chunks of ``chunk_size`` bytes).
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from optout import mesh_transport, ndop
from optout.errors import InputError

if TYPE_CHECKING:
    from mesh_client import MeshClient

log = logging.getLogger(__name__)

INVALID_FILE_REPLY = b"The file contains one or more invalid NHS Numbers.\n"
INVALID_FILE_REASON = "The file contains one or more invalid NHS Numbers."
STRANGER_LOCAL_ID = "X99XX9-19990101000000-00000000"  # a LocalId nobody sent
SMALL_CHUNK = 64 * 1024
_LINE = 12  # ten digits, a comma, a line feed
_POWERS = 10 ** np.arange(9, -1, -1, dtype=np.int64)


class Behaviour(StrEnum):
    """How the stand-in answers (``normal`` is what the real service does)."""

    NORMAL = "normal"
    CRLF = "crlf"
    MALFORMED = "malformed"
    UNREQUESTED = "unrequested"
    SILENT = "silent"
    REJECTED = "rejected"
    NON_DELIVERY = "non_delivery"
    LATE = "late"
    DUPLICATE = "duplicate"
    UNKNOWN_LOCAL_ID = "unknown_local_id"
    CHUNKED = "chunked"


def read_opt_outs(path: str | Path) -> np.ndarray:
    """One NHS number per line (a trailing comma is fine, a one-word header line too): the people the
    stand-in treats as opted out."""
    numbers = []
    for line_no, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        text = raw.strip().rstrip(",").strip()
        if not text or (line_no == 1 and text.isidentifier()):
            continue
        if len(text) != 10 or not text.isdigit():
            raise InputError("not an NHS number of ten digits", path=path, line=line_no)
        numbers.append(int(text))
    return ndop.sorted_unique(np.asarray(numbers, dtype=np.int64))


def request_numbers(data: bytes) -> np.ndarray | None:
    """The numbers of a request file, or None if it is not one (the service rejects the whole file)."""
    if not data or len(data) % _LINE:
        return None
    lines = np.frombuffer(data, dtype=np.uint8).reshape(-1, _LINE)
    digits = lines[:, :10].astype(np.int64) - ord("0")
    if (digits < 0).any() or (digits > 9).any() or (lines[:, 10] != ord(",")).any() or (lines[:, 11] != 10).any():
        return None
    numbers = digits @ _POWERS
    return numbers if ndop.is_valid_number(numbers).all() else None


def reply_bytes(requested: np.ndarray, opt_outs: np.ndarray, behaviour: Behaviour = Behaviour.NORMAL) -> bytes:
    """The reply file: requested numbers that are not opted out, altered as ``behaviour`` asks."""
    cleared = requested[~np.isin(requested, opt_outs)]
    body = ndop.build_request(cleared) if len(cleared) else b""
    if behaviour is Behaviour.CRLF:
        return body.replace(b"\n", b"\r\n")
    if behaviour is Behaviour.MALFORMED:
        middle = (len(cleared) // 2) * _LINE
        return body[:middle] + b"12345,\n" + body[middle:]
    if behaviour is Behaviour.UNREQUESTED:
        return body + ndop.build_request(np.array([_number_not_in(requested)]))
    return body


def _number_not_in(requested: np.ndarray) -> int:
    candidate = 9_999_999_998
    while True:
        batch = np.arange(candidate - 10_000, candidate, dtype=np.int64)
        good = batch[ndop.is_valid_number(batch) & ~np.isin(batch, requested)]
        if len(good):
            return int(good[-1])
        candidate -= 10_000


def job_created_bytes(local_id: str) -> bytes:
    return json.dumps({"status": "job created", "localId": local_id}).encode()


def rejected_bytes(local_id: str, reason: str = INVALID_FILE_REASON) -> bytes:
    return json.dumps({"status": "rejected", "localId": local_id, "reason": reason}).encode()


@dataclass
class StandIn:
    """Answers requests arriving in ``settings.mailbox`` until :meth:`stop` (or ``serve(until=...)``)."""

    settings: mesh_transport.MeshSettings
    opt_outs: np.ndarray
    behaviour: Behaviour = Behaviour.NORMAL
    delay: float = 0.0
    job_created: bool = True
    poll: float = 0.2
    chunk_size: int | None = None  # None: mesh-client's default (75 MiB); ``chunked`` uses SMALL_CHUNK
    answered: int = 0
    _due: list[tuple[float, int, str, str, bytes]] = field(default_factory=list, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _released: threading.Event = field(default_factory=threading.Event, repr=False)

    def stop(self) -> None:
        self._stop.set()

    def release(self) -> None:
        """``late``: send the replies held so far, and every later one, when due."""
        self._released.set()

    def serve(self, *, until: int | None = None) -> None:
        """Poll the inbox and send replies when due; return after ``until`` replies, or when stopped."""
        client = mesh_transport.connect(self.settings, max_retries=0)
        try:
            while not self._stop.is_set() and (until is None or self.answered < until):
                self.step(client)
                self._stop.wait(self.poll)
        finally:
            client.close()

    def step(self, client: MeshClient) -> None:
        """Take every new request from the inbox, then send whatever replies are due."""
        for message_id in mesh_transport.list_inbox(client, self.settings.workflow_id):
            self._take(client, message_id)
        held = self.behaviour is Behaviour.LATE and not self._released.is_set()
        while self._due and self._due[0][0] <= time.monotonic() and not held:
            _, _, recipient, local_id, data = heapq.heappop(self._due)
            if self.behaviour is Behaviour.UNKNOWN_LOCAL_ID:
                self._send(client, recipient, STRANGER_LOCAL_ID, data)
            self._send(client, recipient, local_id, data)
            if self.behaviour is Behaviour.DUPLICATE:
                self._send(client, recipient, local_id, data)
            self.answered += 1
            log.info("stand-in replied to %s (%d bytes)", local_id, len(data))

    def _take(self, client: MeshClient, message_id: str) -> None:
        message = client.retrieve_message(message_id)
        try:
            data = message.read()
        finally:
            message.close()
        mesh_transport.acknowledge(client, message_id)
        sender, local_id = message.sender, message.local_id
        if not sender or not local_id:
            log.warning("stand-in ignored message %s without a sender or LocalId", message_id)
            return
        if self.behaviour is Behaviour.NON_DELIVERY:
            self._report_non_delivery(client, sender, local_id, message_id)
            self.answered += 1
            return
        if self.job_created:
            self._send_status(client, sender, local_id, job_created_bytes(local_id))
        if self.behaviour is Behaviour.SILENT:
            return
        requested = request_numbers(data)
        if self.behaviour is Behaviour.REJECTED or (requested is None and self.job_created):
            self._send_status(client, sender, local_id, rejected_bytes(local_id))
            self.answered += 1
            return
        reply = INVALID_FILE_REPLY if requested is None else reply_bytes(requested, self.opt_outs, self.behaviour)
        heapq.heappush(self._due, (time.monotonic() + self.delay, len(self._due), sender, local_id, reply))

    def _send(self, client: MeshClient, recipient: str, local_id: str, data: bytes) -> None:
        workflow = self.settings.workflow_id
        chunk = self.chunk_size or (SMALL_CHUNK if self.behaviour is Behaviour.CHUNKED else None)
        mesh_transport.send_file(
            client, recipient, data, local_id=local_id, subject=local_id, workflow_id=workflow, max_chunk_size=chunk
        )

    def _send_status(self, client: MeshClient, recipient: str, local_id: str, data: bytes) -> None:
        mesh_transport.send_file(
            client,
            recipient,
            data,
            local_id=local_id,
            subject=local_id,
            workflow_id=self.settings.workflow_id,
            filename=f"{local_id}.json",
            content_type="application/json",
        )

    def _report_non_delivery(self, client: MeshClient, recipient: str, local_id: str, message_id: str) -> None:
        """What MESH sends the sender when the recipient never collects a message (mesh-sandbox's admin API)."""
        response = client._session.post(
            f"{self.settings.url}/messageexchange/admin/report",
            json={
                "mailbox_id": recipient,
                "code": "14",
                "description": "Message not collected by recipient after 5 days",
                "workflow_id": self.settings.workflow_id,
                "subject": local_id,
                "local_id": local_id,
                "status": "undeliverable",
                "linked_message_id": message_id,
            },
            timeout=30,
        )
        response.raise_for_status()

    def start_thread(self) -> threading.Thread:
        """Serve in a daemon thread (tests); call :meth:`stop` then join it."""
        thread = threading.Thread(target=self.serve, name="ndop-stand-in", daemon=True)
        thread.start()
        return thread
