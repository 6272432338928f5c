"""Research extract: filter against the opt-out list, prove it, then send it through the gate.

Runs whenever the nightly refresh publishes a new list version (the Asset ``optout://cleared-list``).
The cluster policy refuses this DAG if the filter, the validation or the gate is taken away.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG, Asset

from optout.airflow.operators.export import GatedExportOperator
from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.operators.validate import OptOutValidateOperator
from optout.airflow.tagging import CPI_TAG

SPEC = str(Path(__file__).resolve().parents[1] / "include" / "specs" / "research_extract.yaml")

with DAG(
    dag_id="research_extract",
    schedule=[Asset("optout://cleared-list")],
    catchup=False,
    max_active_runs=1,
    tags=[CPI_TAG, "optout"],
    doc_md=__doc__,
):
    filtered = OptOutFilterOperator(task_id="filter", spec=SPEC)
    validated = OptOutValidateOperator(task_id="validate", spec=SPEC)
    sent = GatedExportOperator(task_id="export", spec=SPEC, purpose="research", recipient="University research team")
    filtered >> validated >> sent
