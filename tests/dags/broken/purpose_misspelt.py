"""Broken on purpose: the purpose is misspelt, so nobody can tell whether the opt-out applies."""

from __future__ import annotations

from airflow.sdk import DAG, task

from optout.airflow.tagging import CPI_TAG, purpose


@task
def share() -> None:
    """Would send data somewhere."""


with DAG(dag_id="broken_purpose_misspelt", schedule=None, tags=[CPI_TAG]):
    purpose(share(), "reserch")
