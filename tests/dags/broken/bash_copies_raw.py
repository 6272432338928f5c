"""Broken on purpose: in a CPI DAG, a BashOperator copies the raw (unfiltered) file to a partner."""

from __future__ import annotations

from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.operators.validate import OptOutValidateOperator
from optout.airflow.tagging import CPI_TAG

ROOT = Path(__file__).resolve().parents[3]
SPEC = str(ROOT / "include" / "specs" / "research_extract.yaml")

with DAG(dag_id="broken_bash_copies_raw", schedule=None, tags=[CPI_TAG]):
    checked = OptOutFilterOperator(task_id="filter", spec=SPEC) >> OptOutValidateOperator(task_id="validate", spec=SPEC)
    checked >> BashOperator(task_id="copy", bash_command=f"cp {ROOT}/include/sample/patients.csv /tmp/partner/")
