"""Bad input under Airflow: the task fails at once (no retry), names file, line and field, sends nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from optout.ledger import Ledger
from optout.store import Store
from tests.sample_extract import seed

pytestmark = pytest.mark.integration

DAG_FILE = Path(__file__).resolve().parents[1] / "dags" / "bad_input_extract.py"
GOOD_ROWS = "person_id,nhs_number\nP1,9990000018\n"


@pytest.mark.parametrize(
    ("spec", "data", "expected"),
    [
        ("tables: [{name: t, path: t.csv, nhs_number: nhs, person_key: person_id}]", GOOD_ROWS, "field 'nhs'"),
        ("tables: [{name: t, path: t.csv, nhs_number: nhs_number}]", GOOD_ROWS + "P2,1,extra\n", "line 3"),
        ("tables: [{name: t, path: t.csv, nhs_number: nhs_number}]\nsurprise: 1", GOOD_ROWS, "surprise"),
    ],
    ids=["missing-column", "ragged-row", "unknown-key"],
)
def test_bad_input_fails_the_task_without_retry(
    load_dag: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, data: str, expected: str
) -> None:
    seed(Store())
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "t.csv").write_text(data)
    (folder / "spec.yaml").write_text(f"name: bad\npurpose: research\n{spec}\n")
    run = load_dag(DAG_FILE, "bad_input_extract").test(run_conf={"spec": str(folder / "spec.yaml")})
    states = {ti.task_id: (str(ti.state), ti.try_number) for ti in run.get_task_instances()}
    assert states["filter"] == ("failed", 1), states  # AirflowFailException: retries=3 are not used
    assert states["export"][0] == "upstream_failed"
    printed = capsys.readouterr()
    assert expected in printed.out + printed.err
    assert not Ledger().entries()
