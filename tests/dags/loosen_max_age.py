"""A bypass: DAG code that tries to switch freshness off by setting ``OPTOUT_MAX_AGE`` before the tasks run.

The environment may only shorten the store's maximum age, so the filter still refuses a stale list.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import DAG

from optout.airflow.operators.export import GatedExportOperator
from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.operators.validate import OptOutValidateOperator
from optout.airflow.tagging import CPI_TAG

os.environ["OPTOUT_MAX_AGE"] = "3650d"

SPEC = str(Path(__file__).resolve().parents[2] / "include" / "specs" / "research_extract.yaml")

with DAG(dag_id="loosen_max_age", schedule=None, tags=[CPI_TAG]):
    filtered = OptOutFilterOperator(task_id="filter", spec=SPEC, max_age="3650d")
    validated = OptOutValidateOperator(task_id="validate", spec=SPEC)
    sent = GatedExportOperator(task_id="export", spec=SPEC, purpose="research", recipient="University research team")
    filtered >> validated >> sent
