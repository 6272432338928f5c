"""Broken on purpose: a research export with neither the opt-out filter nor the validation."""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG

from optout.airflow.operators.export import GatedExportOperator
from optout.airflow.tagging import CPI_TAG

SPEC = str(Path(__file__).resolve().parents[3] / "include" / "specs" / "research_extract.yaml")

with DAG(dag_id="broken_no_filter", schedule=None, tags=[CPI_TAG]):
    GatedExportOperator(task_id="export", spec=SPEC, purpose="research", recipient="University research team")
