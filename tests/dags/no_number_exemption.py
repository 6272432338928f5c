"""``no_nhs_number_disproportionate`` under Airflow: the rows without a usable NHS number pass, every row
with one is filtered as for research, and the export needs the validation, a fresh list and the approval."""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG

from optout.airflow.operators.export import GatedExportOperator
from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.operators.validate import OptOutValidateOperator
from optout.airflow.tagging import CPI_TAG

SPEC = str(Path(__file__).resolve().parent / "specs" / "no_number_exemption.yaml")

with DAG(dag_id="no_number_exemption", schedule=None, tags=[CPI_TAG], params={"outbox": ""}):
    filtered = OptOutFilterOperator(task_id="filter", spec=SPEC)
    validated = OptOutValidateOperator(task_id="validate", spec=SPEC)
    sent = GatedExportOperator(
        task_id="export", spec=SPEC, purpose="exempt", recipient="Regional registry", destination="{{ params.outbox }}"
    )
    filtered >> validated >> sent
