"""Direct-care share: the opt-out does not apply to care of the patient, so there is no filter.

The export is tagged ``direct_care``; the cluster policy lets it through and the tag shows in the UI.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG, task

from optout.airflow.tagging import CPI_TAG, purpose

SAMPLE = Path(__file__).resolve().parents[1] / "include" / "sample"


@task
def share_with_care_team() -> dict[str, int]:
    """Copy the patient list into the care team's folder; XCom carries a count only."""
    from optout.atomic import write_bytes
    from optout.config import data_dir

    data = (SAMPLE / "patients.csv").read_bytes()
    write_bytes(data_dir() / "outbox" / "direct_care_share" / "patients.csv", data)
    return {"rows": data.count(b"\n") - 1}


with DAG(
    dag_id="direct_care_share",
    schedule=None,
    catchup=False,
    tags=[CPI_TAG, "optout"],
    doc_md=__doc__,
):
    purpose(share_with_care_team(), "direct_care")
