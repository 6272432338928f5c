"""The nightly refresh's operators: send the cohort to the national service, import its reply.

Both are thin over ``optout.mesh``. Errors that a retry cannot fix (bad input, MESH refusing our
credentials or the request, a malformed or suspicious reply) become ``AirflowFailException``; network
and MESH-busy errors are raised as they are, so the task's retries with back-off handle them. XCom
carries IDs and counts only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from optout.airflow.hooks.mesh import MeshHook
from optout.airflow.hooks.store import OptOutStoreHook

if TYPE_CHECKING:
    import numpy as np
    from airflow.sdk import Context

# Emitted when a new version is published: extract DAGs schedule on it to run on a fresh list.
CLEARED_LIST = Asset("optout://cleared-list")


@contextlib.contextmanager
def fail_unless_transient() -> Iterator[None]:
    """Let transport errors through (the task retries them); fail at once, without retry, on the rest."""
    from optout.errors import OptOutError

    try:
        yield
    except OptOutError as exc:
        raise AirflowFailException(str(exc)) from None


class MeshSendRequestOperator(BaseOperator):
    """Build the request from the cohort sources, record it pending in the store and send it over MESH.

    Every source is read and normalised; only valid, distinct NHS numbers are sent (one invalid number
    makes the service reject the whole file). Returns (XCom) the version ID, LocalId, MESH message ID
    and counts.

    :param cohort_paths: CSV or Parquet files holding the cohort (a list, or a comma-separated string).
    :param id_column: the column of NHS numbers in those files.
    :param sql: a query whose first column is the NHS number (combined with the files, if any).
    :param sql_conn_id: Airflow connection to run ``sql`` on (its SQLAlchemy URI is used).
    :param sql_url: a SQLAlchemy URL to run ``sql`` on, instead of ``sql_conn_id``.
    :param mesh_conn_id: the MESH connection (type ``mesh``).
    :param store_conn_id: the opt-out store's Airflow connection (type ``optout_store``); when the default
        one is not defined, ``[optout] store_url`` or ``OPTOUT_STORE_URL`` is used.
    :param subject: MESH Subject; defaults to the LocalId.
    """

    template_fields: Sequence[str] = ("cohort_paths", "id_column", "sql", "sql_conn_id", "sql_url", "subject")
    ui_color = "#d9ecff"

    def __init__(
        self,
        *,
        cohort_paths: Sequence[str] | str = (),
        id_column: str = "nhs_number",
        sql: str | None = None,
        sql_conn_id: str | None = None,
        sql_url: str | None = None,
        mesh_conn_id: str = MeshHook.default_conn_name,
        store_conn_id: str = OptOutStoreHook.default_conn_name,
        subject: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cohort_paths = cohort_paths
        self.id_column = id_column
        self.sql = sql
        self.sql_conn_id = sql_conn_id
        self.sql_url = sql_url
        self.mesh_conn_id = mesh_conn_id
        self.store_conn_id = store_conn_id
        self.subject = subject

    @cached_property
    def hook(self) -> MeshHook:
        return MeshHook(self.mesh_conn_id)

    @cached_property
    def store_hook(self) -> OptOutStoreHook:
        return OptOutStoreHook(self.store_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        from optout.mesh import send_request

        with fail_unless_transient():
            numbers, counts = self.read_cohort()
            self.log.info("cohort: %s", ", ".join(f"{key} {value:,}" for key, value in counts.items()))
            try:
                sent = send_request(
                    self.hook.get_conn(),
                    self.store_hook.store,
                    numbers,
                    settings=self.hook.settings,
                    subject=self.subject or None,
                    source=self._describe_sources(),
                )
            finally:
                self.hook.close()
                self.store_hook.close()
        return {**sent.as_dict(), "dropped": {k: v for k, v in counts.items() if k != "valid"}}

    def read_cohort(self) -> tuple[np.ndarray, dict[str, int]]:
        """Valid distinct numbers from every source, and counts of what each kind of value was."""
        from optout import progress
        from optout.cohort import combine, read_cohort, read_sql_cohort
        from optout.errors import InputError

        paths = _as_list(self.cohort_paths)
        if not paths and not self.sql:
            raise InputError("name at least one cohort source: cohort_paths or sql", field="cohort_paths")
        with progress.reporting(progress.to_log(self.log)):
            cohorts = [read_cohort(paths, self.id_column)] if paths else []
        if self.sql:
            cohorts.append(read_sql_cohort(self._sql_url(), self.sql))
        cohort = combine(cohorts)
        return cohort.numbers, {**cohort.counts, "sent": len(cohort.numbers)}

    def _sql_url(self) -> str:
        from optout.airflow.hooks.connections import connection_url
        from optout.errors import InputError

        if self.sql_url:
            return self.sql_url
        if not self.sql_conn_id:
            raise InputError("a cohort query needs sql_conn_id or sql_url", field="sql")
        return connection_url(self.sql_conn_id)

    def _describe_sources(self) -> str:
        sources = [*(_as_list(self.cohort_paths))]
        if self.sql:
            sources.append(f"sql via {self.sql_conn_id or 'sql_url'}")
        return ", ".join(sources)


class MeshImportReplyOperator(BaseOperator):
    """Download the reply matched on LocalId, import it through the store's sanity gates, acknowledge it.

    On publish the task succeeds and emits ``optout://cleared-list``. A reply that is malformed or holds
    a number never requested publishes nothing; a suspicious one (see :mod:`optout.quarantine`; its
    thresholds are settings, not parameters) is quarantined with its file kept owner-only for a
    governance officer. Both fail the task without retry. A message that turns out to be the service's
    "job created" notice is acknowledged and the task retries later; its rejection fails at once.

    :param local_id: the request's LocalId (from the send task's XCom).
    :param message_id: the reply's MESH message ID (from the sensor); looked up again when empty.
    :param mesh_conn_id: the MESH connection (type ``mesh``).
    :param store_conn_id: the opt-out store's Airflow connection (type ``optout_store``); when the default
        one is not defined, ``[optout] store_url`` or ``OPTOUT_STORE_URL`` is used.
    """

    template_fields: Sequence[str] = ("local_id", "message_id")
    ui_color = "#d9ecff"

    def __init__(
        self,
        *,
        local_id: str,
        message_id: str | None = None,
        mesh_conn_id: str = MeshHook.default_conn_name,
        store_conn_id: str = OptOutStoreHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", [CLEARED_LIST])
        super().__init__(**kwargs)
        self.local_id = local_id
        self.message_id = message_id
        self.mesh_conn_id = mesh_conn_id
        self.store_conn_id = store_conn_id

    @cached_property
    def hook(self) -> MeshHook:
        return MeshHook(self.mesh_conn_id)

    @cached_property
    def store_hook(self) -> OptOutStoreHook:
        return OptOutStoreHook(self.store_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        from optout.mesh import find_reply, receive_reply

        with fail_unless_transient():
            try:
                client, store = self.hook.get_conn(), self.store_hook.store
                workflow = self.hook.settings.workflow_id
                message_id = self.message_id or find_reply(client, store, self.local_id, workflow_id=workflow)
                if not message_id:
                    raise AirflowFailException(f"no reply to {self.local_id} in the MESH inbox")
                info = receive_reply(client, store, self.local_id, message_id)
            finally:
                self.hook.close()
                self.store_hook.close()
        self.log.info(
            "version %d published: cohort %d, cleared %s, opted out %s",
            info.id,
            info.cohort_count,
            info.cleared_count,
            info.opted_out_count,
        )
        counts = {
            "version_id": info.id,
            "cohort_count": info.cohort_count,
            "cleared_count": info.cleared_count,
            "opted_out_count": info.opted_out_count,
        }
        context["outlet_events"][CLEARED_LIST].extra.update(counts)  # counts only: the event says which list
        return counts


def _as_list(value: Sequence[str] | str | None) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part) for part in value]
