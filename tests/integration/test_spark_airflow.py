"""The example Spark DAG under a real ``dag.test()`` against a real Spark Connect server: the operators
resolve the Airflow connection (the Spark provider's ``spark_connect`` type) through the provider's hook,
filter and prove in Spark, and the gate sends the proved folders and records the disclosure."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from optout.ledger import Ledger
from optout.nhs_number import normalise
from optout.store import Store
from tests.integration.test_spark_engine import _read_output
from tests.sample_extract import opted_out, seed

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "spark_research_extract.py"


def test_the_spark_example_runs_filtered_validated_and_gated(
    load_dag: Any, spark_connect_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(Store())
    host, port = spark_connect_url.removeprefix("sc://").rsplit(":", 1)
    connection = {"conn_type": "spark_connect", "host": host, "port": int(port)}
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_CONNECT_DEFAULT", json.dumps(connection))
    run = load_dag(DAG_FILE, "spark_research_extract").test()
    assert {ti.task_id: str(ti.state) for ti in run.get_task_instances()} == dict.fromkeys(
        ("filter", "validate", "export"), "success"
    )
    (entry,) = Ledger().entries()
    assert entry.disclosure.validation_ok and entry.disclosure.removed_rows.get("opted_out", 0) > 0
    delivered = next((Path(os.environ["OPTOUT_HOME"]) / "outbox" / "spark_research_extract").iterdir())
    assert sorted(p.name for p in delivered.iterdir()) == ["episodes.csv", "patients.csv"]
    sent = normalise(_read_output(delivered / "patients.csv").column("nhs_number").cast(pa.string()))
    assert sent.valid.sum() > 0 and np.intersect1d(sent.numbers[sent.valid], opted_out()).size == 0
