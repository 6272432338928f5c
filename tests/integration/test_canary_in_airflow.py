"""No value from the data in any message, under Airflow: the filter, validate and export operators run with
``dag.test()`` on a canary cohort (valid NHS numbers and distinctive names in every column, header rows that
are data), through their error paths and through a run that sends; every line printed or logged, the task
logs, the manifests, the validation results and GX artefacts, and the ledger are scanned for any canary."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from optout.ledger import Ledger
from optout.store import Store
from tests import canary

pytestmark = pytest.mark.integration

DAG_FILE = Path(__file__).resolve().parents[1] / "dags" / "bad_input_extract.py"
SPEC = "name: canary\npurpose: research\ntables:\n  - {{name: people, path: {path}, nhs_number: nhs_number}}\n"
DATA = (".csv", ".parquet", ".sqlite", ".sqlite-wal", ".sqlite-shm", ".npz")  # the extract's rows, the store


def header_is_data(folder: Path) -> str:
    canary.write_csv(folder / "people.csv", header=False)
    return "people.csv"


def undeclared_numbers(folder: Path) -> str:
    canary.write_csv(folder / "people.csv")
    return "people.csv"


def not_parquet(folder: Path) -> str:
    (folder / "people.parquet").write_bytes(f"{canary.NUMBERS[0]} {canary.NAMES[0]}".encode() * 40)
    return "people.parquet"


def sends(folder: Path) -> str:
    """Clean enough to send: names everywhere, numbers only cleared ones outside the number column."""
    numbers = [str(n) for n in canary.NUMBERS]
    notes = [f"{canary.NAMES[i % 3]} kin {canary.CLEARED[i % 5]}" for i in range(len(numbers))]
    pq.write_table(pa.table({"nhs_number": numbers, "notes": notes}), folder / "people.parquet")
    return "people.parquet"


@pytest.mark.parametrize(
    ("write", "filter_state"),
    [(header_is_data, "failed"), (undeclared_numbers, "failed"), (not_parquet, "failed"), (sends, "success")],
    ids=lambda value: getattr(value, "__name__", value),
)
def test_the_operators_show_no_value_from_the_data(
    load_dag: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str], write: Any, filter_state: str
) -> None:
    canary.seed(Store())
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "spec.yaml").write_text(SPEC.format(path=write(folder)))
    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    before = {p for p in logs.rglob("*") if p.is_file()} if logs.exists() else set()
    run = load_dag(DAG_FILE, "bad_input_extract").test(run_conf={"spec": str(folder / "spec.yaml")})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states["filter"] == filter_state, states
    if filter_state == "success":
        assert states["validate"] == states["export"] == "success", states
        assert len(Ledger().entries()) == 1
    printed = capfd.readouterr()
    assert canary.found_in(printed.out + printed.err) == []
    ledger = io.StringIO()
    Ledger().export_csv(None, ledger)
    assert canary.found_in(ledger.getvalue()) == []
    new_logs = [p for p in logs.rglob("*") if p.is_file() and p not in before] if logs.exists() else []
    home = Path(os.environ["OPTOUT_HOME"])
    written = [p for p in home.rglob("*") if p.is_file() and not p.name.endswith(DATA)]
    assert canary.found_in_files([*new_logs, *written]) == {}
