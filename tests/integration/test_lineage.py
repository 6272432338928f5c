"""OpenLineage under dag.test(): the provider's file transport records what filter, validate and export read
and wrote, and the ``optout`` run facet's counts; no NHS number of the cohort appears in any event."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.sample_extract import SAMPLE, numbers

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# Run in a child process: the provider reads its transport once per process, and enabling it here would
# make every later dag.test() in the session emit events.
RUN = """
import sys
from optout.store import Store
from tests.sample_extract import seed
from airflow.dag_processing.dagbag import DagBag

seed(Store())
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
run = bag.get_dag("research_extract").test()
states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
assert set(states.values()) == {"success"}, states
"""


@pytest.fixture
def events(airflow_db: Path, tmp_path: Path) -> list[dict[str, Any]]:
    log = tmp_path / "lineage.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(log), "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "optout-test",
    }
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(ROOT / "dags" / "research_extract.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert log.is_file(), done.stdout[-3000:]
    text = log.read_text()
    cohort = [str(n) for n in numbers(SAMPLE / "patients.csv")]
    assert not [n for n in cohort if n in text or n in done.stdout + done.stderr]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_filter_validate_and_export_report_datasets_and_removals(events: list[dict[str, Any]]) -> None:
    complete = {e["job"]["name"].split(".")[-1]: e for e in events if e["eventType"] == "COMPLETE"}
    assert {"filter", "validate", "export"} <= set(complete)

    def names(event: dict[str, Any], side: str) -> list[tuple[str, str]]:
        return [(d["namespace"], Path(d["name"]).name) for d in event.get(side, [])]

    files = [("file", "patients.csv"), ("file", "episodes.csv")]
    assert names(complete["filter"], "inputs") == files
    assert names(complete["filter"], "outputs") == files
    assert names(complete["validate"], "inputs") == files
    assert names(complete["export"], "outputs") == files
    assert "/outbox/" in complete["export"]["outputs"][0]["name"]
    for task in ("filter", "validate", "export"):
        facet = complete[task]["run"]["facets"]["optout"]
        assert facet["purpose"] == "research" and facet["listVersion"] == 1
        assert 3500 <= facet["listAgeSeconds"] <= 3700  # seeded an hour before filtering
        assert facet["rowsIn"] - facet["rowsOut"] == sum(facet["rowsRemovedByReason"].values())
        assert facet["peopleRemovedByReason"]["opted_out"] > 0
        assert all(isinstance(n, int) for n in facet["peopleRemovedByReason"].values())
