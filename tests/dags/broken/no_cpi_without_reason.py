"""Broken on purpose: tagged as holding no patient data, with no reason anyone can review."""

from __future__ import annotations

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

from optout.airflow.tagging import NO_CPI_TAG

with DAG(dag_id="broken_no_cpi_without_reason", schedule=None, tags=[NO_CPI_TAG]):
    EmptyOperator(task_id="noop")
