"""Exempt disclosure: a court order requires the data, so the opt-out is not applied.

The spec names the purpose ``exempt``, its legal basis and the order's reference (the spec is their one
source: a task that names another basis is refused); they are recorded in the ledger with the
disclosure. The extract is copied unfiltered (with its manifest) and the gate still proves the files
sent are the files copied.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG

from optout.airflow.operators.export import GatedExportOperator
from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.tagging import CPI_TAG

SPEC = str(Path(__file__).resolve().parents[1] / "include" / "specs" / "exempt_disclosure.yaml")

with DAG(
    dag_id="exempt_disclosure",
    schedule=None,
    catchup=False,
    tags=[CPI_TAG, "optout"],
    doc_md=__doc__,
):
    copied = OptOutFilterOperator(task_id="copy_with_manifest", spec=SPEC)
    sent = GatedExportOperator(
        task_id="export",
        spec=SPEC,
        purpose="exempt",
        recipient="High Court",
    )
    copied >> sent
