"""Broken on purpose: a research extract sent under the label ``direct_care``, which is not filtered."""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG

from optout.airflow.operators.export import GatedExportOperator
from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.tagging import CPI_TAG

SPEC = str(Path(__file__).resolve().parents[3] / "include" / "specs" / "research_extract.yaml")

with DAG(dag_id="broken_research_as_direct_care", schedule=None, tags=[CPI_TAG]):
    OptOutFilterOperator(task_id="copy", spec=SPEC) >> GatedExportOperator(
        task_id="export", spec=SPEC, purpose="direct_care", recipient="University research team"
    )
