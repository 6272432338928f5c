"""The research extract with a tamper step between each stage, driven by ``dag_run.conf["tamper"]``.

``plant`` edits a filtered file before validation (validation fails, the exports are forced to run
anyway by ``all_done``); ``alter`` edits one after validation; ``stale`` shortens the maximum age so
the list is stale at send time; ``replace`` publishes a newer list version. Two exports follow: our
``GatedExportOperator`` and a plain operator wrapped with ``gate()``. Each must refuse; with no tamper
both deliver and record a disclosure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseOperator, task

from optout.airflow.operators.export import GatedExportOperator, gate
from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.operators.validate import OptOutValidateOperator
from optout.airflow.tagging import CPI_TAG, internal

SPEC = str(Path(__file__).resolve().parents[2] / "include" / "specs" / "research_extract.yaml")


class FileDropOperator(BaseOperator):
    """A stand-in for any export operator (SFTP, S3, ...): copies one local file to a folder."""

    template_fields = ("local_filepath", "remote_dir")

    def __init__(self, *, local_filepath: str, remote_dir: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.local_filepath = local_filepath
        self.remote_dir = remote_dir

    def execute(self, context: Any) -> None:
        Path(self.remote_dir).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.local_filepath, Path(self.remote_dir) / Path(self.local_filepath).name)


def _tamper(context: Any, when: str) -> None:
    action = (context["dag_run"].conf or {}).get("tamper")
    out_dir = Path(context["ti"].xcom_pull(task_ids="filter")["out_dir"])
    if (action, when) in {("plant", "early"), ("alter", "late")}:
        with (out_dir / "episodes.csv").open("a", encoding="utf-8") as handle:
            handle.write("P999,E9999,asthma\n")
    elif action == "stale" and when == "late":
        os.environ["OPTOUT_MAX_AGE"] = "30m"
    elif action == "replace" and when == "late":
        import numpy as np

        from optout.quarantine import ANY_SHARE
        from optout.store import Store

        store = Store()
        cohort = store.load().cohort
        newer = store.record_request(cohort, local_id="replacement")
        store.import_reply(newer.id, cohort[np.arange(cohort.size) % 7 != 0], thresholds=ANY_SHARE)


@task(trigger_rule="all_done")
def tamper_early(**context: Any) -> None:
    _tamper(context, "early")


@task(trigger_rule="all_done")
def tamper_late(**context: Any) -> None:
    _tamper(context, "late")


with DAG(dag_id="send_time_checks", schedule=None, tags=[CPI_TAG], params={"outbox": ""}):
    filtered = OptOutFilterOperator(task_id="filter", spec=SPEC)
    validated = OptOutValidateOperator(task_id="validate", spec=SPEC)
    late = internal(tamper_late(), "the test's tamper step: edits files in place")
    exported = GatedExportOperator(
        task_id="export",
        spec=SPEC,
        purpose="research",
        recipient="University research team",
        destination="{{ params.outbox }}",
        trigger_rule="all_done",
    )
    dropped = gate(
        FileDropOperator(
            task_id="drop",
            local_filepath="{{ ti.xcom_pull(task_ids='filter')['out_dir'] }}/patients.csv",
            remote_dir="{{ params.outbox }}/drop",
            trigger_rule="all_done",
        ),
        spec=SPEC,
        purpose="research",
        recipient="Partner drop folder",
        sends=("local_filepath",),
    )
    filtered >> internal(tamper_early(), "the test's tamper step") >> validated >> late >> [exported, dropped]
