"""Broken on purpose: in a CPI DAG, a ``@task`` and a PythonOperator copy the raw file; neither has a role."""

from __future__ import annotations

import shutil
from pathlib import Path

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, task

from optout.airflow.tagging import CPI_TAG

RAW = Path(__file__).resolve().parents[3] / "include" / "sample" / "patients.csv"


@task
def upload() -> None:
    shutil.copyfile(RAW, "/tmp/partner.csv")


with DAG(dag_id="broken_python_copies_raw", schedule=None, tags=[CPI_TAG]):
    upload()
    PythonOperator(task_id="copy", python_callable=shutil.copyfile, op_args=[str(RAW), "/tmp/partner2.csv"])
