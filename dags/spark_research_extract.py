"""Research extract filtered in Spark: filter, prove and hash where the data lives, then send through the gate.

The spec (``engine: spark``) names the Airflow connection ``spark_connect_default`` (the Spark provider's
``spark_connect`` type); the operators resolve it through the provider's hook when they run, so parsing
this file needs neither Spark nor the connection. Triggered by hand (docker-compose.yaml starts the
spark-connect service it reaches); the cluster policy refuses it if the filter, the validation or the gate
is taken away.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG

from optout.airflow.operators.export import GatedExportOperator
from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.operators.validate import OptOutValidateOperator
from optout.airflow.tagging import CPI_TAG

SPEC = str(Path(__file__).resolve().parents[1] / "include" / "specs" / "spark_research_extract.yaml")

with DAG(
    dag_id="spark_research_extract",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=[CPI_TAG, "optout", "spark"],
    doc_md=__doc__,
):
    filtered = OptOutFilterOperator(task_id="filter", spec=SPEC)
    validated = OptOutValidateOperator(task_id="validate", spec=SPEC)
    sent = GatedExportOperator(task_id="export", spec=SPEC, purpose="research", recipient="University research team")
    filtered >> validated >> sent
