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

    Runs in ``reschedule`` mode by default, so no worker slot is held between pokes. The service's JSON
    "job created" message is acknowledged and ignored. A network error during a poke counts as "not yet"
    (logged); MESH refusing our credentials fails at once. After ``timeout`` (default 6 hours) the task
    fails and the previous version stays current.

    :param local_id: the request's LocalId (from the send task's XCom).
    :param mesh_conn_id: the MESH connection (type ``mesh``).
    """

    template_fields: Sequence[str] = ("local_id",)
    ui_color = "#fff3d9"

    def __init__(
        self,
        *,
        local_id: str,
        mesh_conn_id: str = MeshHook.default_conn_name,
        mode: str = "reschedule",
        timeout: timedelta | float = DEFAULT_TIMEOUT,
        poke_interval: timedelta | float = DEFAULT_POKE_INTERVAL,
        **kwargs: Any,
    ) -> None:
        super().__init__(mode=mode, timeout=timeout, poke_interval=poke_interval, **kwargs)
        self.local_id = local_id
        self.mesh_conn_id = mesh_conn_id

    @cached_property
    def hook(self) -> MeshHook:
        return MeshHook(self.mesh_conn_id)

    def poke(self, context: Context) -> PokeReturnValue | bool:
        from optout.mesh import find_reply, is_transient

        with fail_unless_transient():
            try:
                message_id = find_reply(self.hook.get_conn(), self.local_id)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.log.warning("MESH not reachable this time (%s); still waiting", type(exc).__name__)
                return False
            finally:
                self.hook.close()
        if message_id is None:
            self.log.info("no reply to %s yet", self.local_id)
            return False
        self.log.info("reply to %s is MESH message %s", self.local_id, message_id)
        return PokeReturnValue(is_done=True, xcom_value=message_id)
