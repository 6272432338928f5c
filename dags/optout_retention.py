"""Nightly retention: delete filtered extracts, validation folders and old list versions' NHS numbers kept
longer than ``[optout] retain_outputs``, ``retain_validation`` and ``retain_versions`` (defaults 30d, 400d,
30d), one ledger entry per deletion. Runs at 03:00 Europe/London, after the nightly refresh; sends nothing.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task
from airflow.timetables.trigger import CronTriggerTimetable

from optout.airflow.tagging import no_cpi


@task
def apply_retention() -> dict[str, int]:
    """XCom carries counts only."""
    from collections import Counter

    from optout.governance import retention

    done = retention.run()
    return dict(Counter(deletion.what for deletion in done))


with DAG(
    dag_id="optout_retention",
    description="Delete outputs, validation folders and old versions' numbers past their retention",
    schedule=CronTriggerTimetable("0 3 * * *", timezone="Europe/London"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["optout"],
    doc_md=__doc__,
) as dag:
    no_cpi(dag, "deletes files and old list versions past their retention; reads and sends no patient data")
    apply_retention()
