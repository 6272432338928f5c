"""Direct-care share: the opt-out does not apply to care of the patient, so nothing is filtered out.

The extract is still copied with its manifest and sent through the gate: direct care is a disclosure
too, and the ledger records what went, to whom and when. The spec names the purpose ``direct_care``; a
research extract cannot be sent under this label (the policy and the gate compare it with the spec).
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG

from optout.airflow.operators.export import GatedExportOperator
from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.tagging import CPI_TAG

SPEC = str(Path(__file__).resolve().parents[1] / "include" / "specs" / "direct_care_share.yaml")

with DAG(
    dag_id="direct_care_share",
    schedule=None,
    catchup=False,
    tags=[CPI_TAG, "optout"],
    doc_md=__doc__,
):
    copied = OptOutFilterOperator(task_id="copy_with_manifest", spec=SPEC)
    shared = GatedExportOperator(
        task_id="share_with_care_team", spec=SPEC, purpose="direct_care", recipient="Leeds community nursing team"
    )
    copied >> shared
