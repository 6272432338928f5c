"""Broken on purpose: a DAG that copies the patient file and never says whether it handles patient data."""

from __future__ import annotations

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG(dag_id="broken_undeclared_scope", schedule=None):
    BashOperator(task_id="copy", bash_command="cp include/sample/patients.csv /tmp/partner/")
