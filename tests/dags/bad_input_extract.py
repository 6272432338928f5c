"""A research extract whose spec comes from ``dag_run.conf["spec"]``: the tests hand it bad input."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from optout.airflow.operators.export import GatedExportOperator
from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.operators.validate import OptOutValidateOperator
from optout.airflow.tagging import CPI_TAG

SPEC = "{{ dag_run.conf['spec'] }}"

with DAG("bad_input_extract", schedule=None, start_date=datetime(2026, 1, 1), tags=[CPI_TAG]):
    filtered = OptOutFilterOperator(task_id="filter", spec=SPEC, retries=3)
    validated = OptOutValidateOperator(task_id="validate", spec=SPEC)
    sent = GatedExportOperator(task_id="export", spec=SPEC, purpose="research", recipient="nobody")
    filtered >> validated >> sent
