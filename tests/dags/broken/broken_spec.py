"""Broken on purpose: the spec has a mistake, found when the DAG is parsed, not 50 s into a run."""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG

from optout.airflow.operators.export import GatedExportOperator
from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.operators.validate import OptOutValidateOperator
from optout.airflow.tagging import CPI_TAG

SPEC = str(Path(__file__).resolve().parent / "specs" / "no_identifier.yaml")

with DAG(dag_id="broken_spec", schedule=None, tags=[CPI_TAG]):
    checked = OptOutFilterOperator(task_id="filter", spec=SPEC) >> OptOutValidateOperator(task_id="validate", spec=SPEC)
    checked >> GatedExportOperator(task_id="export", spec=SPEC, purpose="research", recipient="University")
