"""Broken on purpose: the gate put around a ``@task``, whose code may send anything."""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG, task

from optout.airflow.operators.export import gate
from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.operators.validate import OptOutValidateOperator
from optout.airflow.tagging import CPI_TAG

SPEC = str(Path(__file__).resolve().parents[3] / "include" / "specs" / "research_extract.yaml")


@task
def upload(path: str = "") -> None:
    """Would upload whatever it likes."""


with DAG(dag_id="broken_gate_on_task", schedule=None, tags=[CPI_TAG]):
    checked = OptOutFilterOperator(task_id="filter", spec=SPEC) >> OptOutValidateOperator(task_id="validate", spec=SPEC)
    checked >> gate(upload(), spec=SPEC, purpose="research", recipient="Partner", sends=("op_kwargs",))
