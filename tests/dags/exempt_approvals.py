"""The court-order exemption under each state of its approval, set by ``dag_run.conf["approval"]``.

A step standing in for governance staff records the approval the spec cites (``HC-ORDER-2026-A17``)
as ``valid``, ``expired`` (its last day was yesterday), ``revoked``, ``mismatched`` (recorded for
another legal basis) or ``missing`` (never recorded). Only ``valid`` may send; every other state must
fail the export with nothing delivered and nothing in the ledger claiming a disclosure.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, task

from optout.airflow.operators.export import GatedExportOperator
from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.tagging import CPI_TAG, internal

SPEC = str(Path(__file__).resolve().parents[2] / "include" / "specs" / "exempt_disclosure.yaml")
REFERENCE = "HC-ORDER-2026-A17"


@task
def record_approval(**context: Any) -> None:
    from optout.governance.approvals import ApprovalRegister

    state = (context["dag_run"].conf or {}).get("approval", "valid")
    now = datetime.now(UTC)
    register = ApprovalRegister()
    try:
        if state == "expired":
            register.add(
                REFERENCE,
                basis="court_order",
                approved_by="Caldicott Guardian",
                expires=(now - timedelta(days=1)).date(),
                recorded_by="IG officer",
                now=now - timedelta(days=90),
            )
        elif state != "missing":
            basis = "copi_reg3" if state == "mismatched" else "court_order"
            expires = (now + timedelta(days=30)).date()
            register.add(REFERENCE, basis=basis, approved_by="Caldicott Guardian", expires=expires, recorded_by="IG")
            if state == "revoked":
                register.revoke(REFERENCE, by="Data Protection Officer")
    finally:
        register.dispose()


with DAG(dag_id="exempt_approvals", schedule=None, tags=[CPI_TAG], params={"outbox": ""}):
    copied = OptOutFilterOperator(task_id="copy_with_manifest", spec=SPEC)
    sent = GatedExportOperator(
        task_id="export", spec=SPEC, purpose="exempt", recipient="High Court", destination="{{ params.outbox }}"
    )
    copied >> internal(record_approval(), "the test's stand-in for governance staff: writes the store only") >> sent
