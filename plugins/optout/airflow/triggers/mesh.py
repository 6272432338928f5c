"""Wait for the national service's reply in the triggerer: an async loop over MESH message headers.

mesh-client is synchronous, so each look at the inbox runs in a worker thread (``asyncio.to_thread``)
and the event loop the triggerer shares with other triggers is never blocked. Each look is the same
as a reschedule-mode poke (:func:`look_for_reply`): headers only, "job created" acknowledged, a
rejection or MESH report fails the request with its reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from optout.airflow.hooks.store import OptOutStoreHook

log = logging.getLogger(__name__)


def look_for_reply(mesh_conn_id: str, store_conn_id: str, local_id: str, sent_message_id: str | None) -> str | None:
    """One look at the inbox: the reply's message ID, or None while it has not come.

    Raises :class:`optout.errors.OptOutError` for what a retry cannot fix (a rejection, a MESH report,
    refused credentials); transport errors pass through as they are.
    """
    from optout.airflow.hooks.mesh import MeshHook
    from optout.mesh import check_inbox

    hook, store = MeshHook(mesh_conn_id), OptOutStoreHook(store_conn_id)
    try:
        return check_inbox(
            hook.get_conn(),
            store.store,
            local_id,
            workflow_id=hook.settings.workflow_id,
            sent_message_id=sent_message_id or None,
        ).reply
    finally:
        hook.close()
        store.close()


class MeshReplyTrigger(BaseTrigger):
    """Fires once: ``{"status": "reply", "message_id": ...}``, ``{"status": "failed", "reason": ...}``
    (nothing a retry can fix) or ``{"status": "timeout"}`` at ``deadline`` (ISO-8601, UTC)."""

    def __init__(
        self,
        *,
        local_id: str,
        deadline: str,
        mesh_conn_id: str,
        store_conn_id: str = OptOutStoreHook.default_conn_name,
        sent_message_id: str | None = None,
        poke_interval: float = 300.0,
    ) -> None:
        super().__init__()
        self.local_id = local_id
        self.deadline = deadline
        self.mesh_conn_id = mesh_conn_id
        self.store_conn_id = store_conn_id
        self.sent_message_id = sent_message_id
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "local_id": self.local_id,
                "deadline": self.deadline,
                "mesh_conn_id": self.mesh_conn_id,
                "store_conn_id": self.store_conn_id,
                "sent_message_id": self.sent_message_id,
                "poke_interval": self.poke_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from optout.errors import OptOutError
        from optout.mesh_transport import is_transient

        deadline = datetime.fromisoformat(self.deadline)
        while True:
            try:
                args = (self.mesh_conn_id, self.store_conn_id, self.local_id, self.sent_message_id)
                message_id = await asyncio.to_thread(look_for_reply, *args)
            except OptOutError as exc:
                yield TriggerEvent({"status": "failed", "reason": str(exc)})
                return
            except Exception as exc:
                if not is_transient(exc):
                    yield TriggerEvent({"status": "failed", "reason": f"{type(exc).__name__}: {exc}"})
                    return
                log.warning("MESH not reachable this time (%s); still waiting", type(exc).__name__)
                message_id = None
            if message_id is not None:
                log.info("reply to %s is MESH message %s", self.local_id, message_id)
                yield TriggerEvent({"status": "reply", "message_id": message_id})
                return
            log.info("no reply to %s yet", self.local_id)
            left = (deadline - datetime.now(UTC)).total_seconds()
            if left <= 0:
                yield TriggerEvent({"status": "timeout"})
                return
            await asyncio.sleep(min(self.poke_interval, left))
