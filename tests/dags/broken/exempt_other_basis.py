"""Broken on purpose: an exempt export names another legal basis and reference than its spec records."""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG

from optout.airflow.operators.export import GatedExportOperator
from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.tagging import CPI_TAG

SPEC = str(Path(__file__).resolve().parents[3] / "include" / "specs" / "exempt_disclosure.yaml")

with DAG(dag_id="broken_exempt_other_basis", schedule=None, tags=[CPI_TAG]):
    OptOutFilterOperator(task_id="copy", spec=SPEC) >> GatedExportOperator(
        task_id="export",
        spec=SPEC,
        purpose="exempt",
        legal_basis="copi_reg3",
        reference="COPI-2026-001",
        recipient="Public Health Agency",
    )
