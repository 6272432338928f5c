"""Wait for the national service's reply to one request, matched on its LocalId."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from optout.airflow.hooks.mesh import MeshHook
from optout.airflow.operators.refresh import fail_unless_transient

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_TIMEOUT = timedelta(hours=6)
DEFAULT_POKE_INTERVAL = timedelta(minutes=5)


class MeshReplySensor(BaseSensorOperator):
    """Poke our MESH inbox until the reply to ``local_id`` is there; XCom is its MESH message ID.

    Runs in ``reschedule`` mode by default, so no worker slot is held between pokes. Each poke reads
    message headers only (:func:`optout.mesh.check_inbox`): the service's JSON "job created" message is
    acknowledged and ignored; its rejection, or a MESH non-delivery, expiry or error report about the
    request, fails the task at once (no retry) with the reason, and the request is recorded failed. A
    network error during a poke counts as "not yet" (logged); MESH refusing our credentials fails at
    once. After ``timeout`` (default 6 hours) the task fails and the previous version stays current; a
    reply that comes later is imported by the next run if no newer request was sent.

    :param local_id: the request's LocalId (from the send task's XCom).
    :param sent_message_id: the request's MESH message ID (matches a report that carries no LocalId).
    :param mesh_conn_id: the MESH connection (type ``mesh``).
    :param store_url: the store's SQLAlchemy URL; default ``OPTOUT_STORE_URL`` or the per-user SQLite file.
    """

    template_fields: Sequence[str] = ("local_id", "sent_message_id")
    ui_color = "#fff3d9"

    def __init__(
        self,
        *,
        local_id: str,
        sent_message_id: str | None = None,
        mesh_conn_id: str = MeshHook.default_conn_name,
        store_url: str | None = None,
        mode: str = "reschedule",
        timeout: timedelta | float = DEFAULT_TIMEOUT,
        poke_interval: timedelta | float = DEFAULT_POKE_INTERVAL,
        **kwargs: Any,
    ) -> None:
        super().__init__(mode=mode, timeout=timeout, poke_interval=poke_interval, **kwargs)
        self.local_id = local_id
        self.sent_message_id = sent_message_id
        self.mesh_conn_id = mesh_conn_id
        self.store_url = store_url

    @cached_property
    def hook(self) -> MeshHook:
        return MeshHook(self.mesh_conn_id)

    def poke(self, context: Context) -> PokeReturnValue | bool:
        from optout.mesh import check_inbox, is_transient
        from optout.store import Store

        with fail_unless_transient():
            try:
                found = check_inbox(
                    self.hook.get_conn(),
                    Store(self.store_url),
                    self.local_id,
                    workflow_id=self.hook.settings.workflow_id,
                    sent_message_id=self.sent_message_id or None,
                )
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.log.warning("MESH not reachable this time (%s); still waiting", type(exc).__name__)
                return False
            finally:
                self.hook.close()
        message_id = found.reply
        if message_id is None:
            self.log.info("no reply to %s yet", self.local_id)
            return False
        self.log.info("reply to %s is MESH message %s", self.local_id, message_id)
        return PokeReturnValue(is_done=True, xcom_value=message_id)
