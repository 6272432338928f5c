"""Nightly refresh of the opt-out list over MESH: send the cohort, wait for the reply, import it.

Runs at 01:00 Europe/London. One run at a time, no catch-up (an old night's check is of no use).
Transport errors (network, MESH busy or down) are retried with exponential back-off; anything a retry
cannot fix (bad cohort, wrong credentials, a malformed, unrequested or suspicious reply, no reply within
6 hours) fails the run at once, and the previous version stays current until its maximum age.

Connection ``mesh_default`` (type ``mesh``, see docs/mesh.md). For the local demo and the tests it comes
from ``AIRFLOW_CONN_MESH_DEFAULT``, printed by ``optout sandbox up``.

``OPTOUT_REPLY_POKE_SECONDS`` (default 300) sets how often the wait looks for the reply. The wait runs in
the triggerer; ``OPTOUT_REPLY_DEFERRABLE=false`` makes it poke in reschedule mode instead.

Alerting: ``on_failure_callback`` calls :func:`alert_on_failure`; replace its body (or the callback) with
your notifier, e.g. ``airflow.providers.smtp.notifications.smtp.SmtpNotifier`` or a Slack notifier.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param
from airflow.timetables.trigger import CronTriggerTimetable

from optout.airflow.operators.refresh import CLEARED_LIST, MeshImportReplyOperator, MeshSendRequestOperator
from optout.airflow.sensors.mesh import MeshReplySensor
from optout.airflow.tagging import CPI_TAG

log = logging.getLogger(__name__)


def alert_on_failure(context: dict[str, Any]) -> None:
    """Hook point for alerting: says which task failed, never any data (the message holds counts only)."""
    ti = context.get("task_instance")
    log.error(
        "opt-out refresh failed: dag %s, task %s, run %s: %s. The previous opt-out list stays current.",
        getattr(ti, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        context.get("run_id"),
        context.get("exception") or context.get("reason"),
    )


with DAG(
    dag_id="optout_nightly_refresh",
    description="Check the cohort against the National Data Opt-out over MESH and publish a new version",
    schedule=CronTriggerTimetable("0 1 * * *", timezone="Europe/London"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    on_failure_callback=alert_on_failure,
    default_args={
        "retries": 4,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
    },
    params={
        "cohort_paths": Param([], type="array", description="CSV or Parquet files holding the cohort"),
        "id_column": Param("nhs_number", type="string", description="Column of NHS numbers in those files"),
        "cohort_sql": Param(None, type=["null", "string"], description="Query whose first column is the NHS number"),
        "cohort_sql_conn_id": Param(None, type=["null", "string"], description="Airflow connection for the query"),
    },
    tags=[CPI_TAG, "optout", "mesh"],  # the cohort is NHS numbers
    doc_md=__doc__,
) as dag:
    send = MeshSendRequestOperator(
        task_id="send_request",
        cohort_paths="{{ params.cohort_paths }}",
        id_column="{{ params.id_column }}",
        sql="{{ params.cohort_sql }}",
        sql_conn_id="{{ params.cohort_sql_conn_id }}",
    )
    wait = MeshReplySensor(
        task_id="wait_for_reply",
        local_id="{{ ti.xcom_pull(task_ids='send_request')['local_id'] }}",
        sent_message_id="{{ ti.xcom_pull(task_ids='send_request')['message_id'] }}",
        # The service replies within hours: 5-minute pokes. The local demo's stand-in replies in seconds.
        poke_interval=float(os.environ.get("OPTOUT_REPLY_POKE_SECONDS", "300")),
    )
    receive = MeshImportReplyOperator(
        task_id="import_reply",
        local_id="{{ ti.xcom_pull(task_ids='send_request')['local_id'] }}",
        message_id="{{ ti.xcom_pull(task_ids='wait_for_reply') }}",
        outlets=[CLEARED_LIST],
    )
    send >> wait >> receive
