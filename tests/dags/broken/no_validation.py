"""Broken on purpose: filtered, but sent without the validation that proves the filter worked."""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG

from optout.airflow.operators.export import GatedExportOperator
from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.tagging import CPI_TAG

SPEC = str(Path(__file__).resolve().parents[3] / "include" / "specs" / "research_extract.yaml")

with DAG(dag_id="broken_no_validation", schedule=None, tags=[CPI_TAG]):
    OptOutFilterOperator(task_id="filter", spec=SPEC) >> GatedExportOperator(
        task_id="export", spec=SPEC, purpose="research", recipient="University research team"
    )
