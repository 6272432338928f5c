"""Broken on purpose: an export operator gated without naming the fields that hold what it sends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseOperator

from optout.airflow.operators.export import gate
from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.operators.validate import OptOutValidateOperator
from optout.airflow.tagging import CPI_TAG

SPEC = str(Path(__file__).resolve().parents[3] / "include" / "specs" / "research_extract.yaml")


class FileDropOperator(BaseOperator):
    template_fields = ("local_filepath",)

    def __init__(self, *, local_filepath: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.local_filepath = local_filepath

    def execute(self, context: object) -> None:
        """Would copy ``local_filepath`` (the raw file, say) to a partner."""


with DAG(dag_id="broken_gate_without_sends", schedule=None, tags=[CPI_TAG]):
    checked = OptOutFilterOperator(task_id="filter", spec=SPEC) >> OptOutValidateOperator(task_id="validate", spec=SPEC)
    checked >> gate(
        FileDropOperator(task_id="drop", local_filepath="/data/raw/patients.csv"),
        spec=SPEC,
        purpose="research",
        recipient="Partner",
        sends=(),
    )
