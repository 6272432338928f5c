"""Broken on purpose: an export-type task in a DAG that handles patient data, with no purpose at all.

``FileDropOperator`` counts as an export because the test names it in ``[optout] export_operators``.
"""

from __future__ import annotations

from airflow.sdk import DAG, BaseOperator

from optout.airflow.tagging import CPI_TAG


class FileDropOperator(BaseOperator):
    def execute(self, context: object) -> None:
        """Would copy a file to a partner's drop folder."""


with DAG(dag_id="broken_untagged_export", schedule=None, tags=[CPI_TAG]):
    FileDropOperator(task_id="drop")
