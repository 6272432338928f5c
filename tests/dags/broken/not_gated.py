"""Broken on purpose: filtered and validated, tagged research, but sent by a task the gate does not guard."""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG, task

from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.operators.validate import OptOutValidateOperator
from optout.airflow.tagging import CPI_TAG, purpose

SPEC = str(Path(__file__).resolve().parents[3] / "include" / "specs" / "research_extract.yaml")


@task
def upload() -> None:
    """Would upload the extract without re-checking it."""


with DAG(dag_id="broken_not_gated", schedule=None, tags=[CPI_TAG]):
    checked = OptOutFilterOperator(task_id="filter", spec=SPEC) >> OptOutValidateOperator(task_id="validate", spec=SPEC)
    checked >> purpose(upload(), "research", extract=SPEC)
