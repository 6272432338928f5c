"""Wait for the national service's reply to one request, matched on its LocalId."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException

from optout.airflow.hooks.mesh import MeshHook
from optout.airflow.hooks.store import OptOutStoreHook
from optout.airflow.operators.refresh import fail_unless_transient
from optout.airflow.triggers.mesh import MeshReplyTrigger, look_for_reply

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_TIMEOUT = timedelta(hours=6)
DEFAULT_POKE_INTERVAL = timedelta(minutes=5)
DEFERRABLE_ENV = "OPTOUT_REPLY_DEFERRABLE"


def deferrable_default() -> bool:
    """``OPTOUT_REPLY_DEFERRABLE`` (default true): false for a deployment without a triggerer."""
    return os.environ.get(DEFERRABLE_ENV, "true").strip().lower() not in {"0", "false", "no", "off"}


class MeshReplySensor(BaseSensorOperator):
    """Wait until the reply to ``local_id`` is in our MESH inbox; XCom is its MESH message ID.

    Deferrable by default: after one look it hands the wait to the triggerer (:class:`MeshReplyTrigger`),
    which holds no worker slot for the hours the service may take. Without a triggerer set
    ``deferrable=False`` (or ``OPTOUT_REPLY_DEFERRABLE=false``): it then pokes in ``reschedule`` mode,
    also without holding a slot between pokes. Either way each look reads message headers only
    (:func:`optout.mesh.check_inbox`): the service's JSON "job created" message is acknowledged and
    ignored; its rejection, or a MESH non-delivery, expiry or error report about the request, fails
    the task at once (no retry) with the reason, and the request is recorded failed. A network error
    counts as "not yet" (logged); MESH refusing our credentials fails at once. After ``timeout``
    (default 6 hours) the task fails and the previous version stays current; a reply that comes later
    is imported by the next run if no newer request was sent.

    :param local_id: the request's LocalId (from the send task's XCom).
    :param sent_message_id: the request's MESH message ID (matches a report that carries no LocalId).
    :param mesh_conn_id: the MESH connection (type ``mesh``).
    :param store_conn_id: the opt-out store's Airflow connection (type ``optout_store``); when the default
        one is not defined, ``[optout] store_url`` or ``OPTOUT_STORE_URL`` is used.
    :param deferrable: wait in the triggerer (default ``OPTOUT_REPLY_DEFERRABLE``, true).
    """

    template_fields: Sequence[str] = ("local_id", "sent_message_id")
    ui_color = "#fff3d9"

    def __init__(
        self,
        *,
        local_id: str,
        sent_message_id: str | None = None,
        mesh_conn_id: str = MeshHook.default_conn_name,
        store_conn_id: str = OptOutStoreHook.default_conn_name,
        deferrable: bool | None = None,
        mode: str = "reschedule",
        timeout: timedelta | float = DEFAULT_TIMEOUT,
        poke_interval: timedelta | float = DEFAULT_POKE_INTERVAL,
        **kwargs: Any,
    ) -> None:
        super().__init__(mode=mode, timeout=timeout, poke_interval=poke_interval, **kwargs)
        self.local_id = local_id
        self.sent_message_id = sent_message_id
        self.mesh_conn_id = mesh_conn_id
        self.store_conn_id = store_conn_id
        self.deferrable = deferrable_default() if deferrable is None else deferrable

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        found = self.poke(context)
        if isinstance(found, PokeReturnValue):
            return found.xcom_value
        deadline = datetime.now(UTC) + timedelta(seconds=float(self.timeout))
        self.defer(
            trigger=MeshReplyTrigger(
                local_id=self.local_id,
                deadline=deadline.isoformat(),
                mesh_conn_id=self.mesh_conn_id,
                store_conn_id=self.store_conn_id,
                sent_message_id=self.sent_message_id or None,
                poke_interval=float(self.poke_interval),
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        """Back from the triggerer: the reply's message ID, or a failure without retry."""
        status = event.get("status")
        if status == "reply":
            self.log.info("reply to %s is MESH message %s", self.local_id, event["message_id"])
            return str(event["message_id"])
        if status == "timeout":
            raise AirflowFailException(
                f"no reply to {self.local_id} within {timedelta(seconds=float(self.timeout))}; "
                "the previous version stays current and the next run collects a late reply"
            )
        raise AirflowFailException(str(event.get("reason") or event))

    def poke(self, context: Context) -> PokeReturnValue | bool:
        from optout.mesh_transport import is_transient

        with fail_unless_transient():
            try:
                message_id = look_for_reply(self.mesh_conn_id, self.store_conn_id, self.local_id, self.sent_message_id)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.log.warning("MESH not reachable this time (%s); still waiting", type(exc).__name__)
                return False
        if message_id is None:
            self.log.info("no reply to %s yet", self.local_id)
            return False
        self.log.info("reply to %s is MESH message %s", self.local_id, message_id)
        return PokeReturnValue(is_done=True, xcom_value=message_id)
