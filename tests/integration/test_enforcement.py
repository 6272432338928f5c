"""Enforcement in real Airflow: the policy at parse time, and the operators and gate under dag.test()."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optout.ledger import Ledger
from optout.store import Store
from tests.sample_extract import SAMPLE, approve_court_order, numbers, opted_out, seed

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "tests" / "dags" / "broken"
EXAMPLES = {
    "research_extract": ROOT / "dags" / "research_extract.py",
    "direct_care_share": ROOT / "dags" / "direct_care_share.py",
    "exempt_disclosure": ROOT / "dags" / "exempt_disclosure.py",
    "spark_research_extract": ROOT / "dags" / "spark_research_extract.py",
}


@pytest.fixture
def seeded() -> Store:
    """A fresh list version for the sample data, checked an hour ago."""
    store = Store()
    seed(store)
    return store


def _states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _run(load_dag: Any, path: Path, dag_id: str, conf: dict[str, Any] | None = None) -> dict[str, str]:
    return _states(load_dag(path, dag_id).test(run_conf=conf))


BROKEN_DAGS = {
    "no_filter": "has no opt-out filter upstream for extract 'research_extract': add OptOutFilterOperator",
    "no_validation": "has a filter but no validation upstream: add OptOutValidateOperator",
    "export_not_downstream": "the filter 'filter' of its extract is not upstream of it",
    "exempt_other_basis": "legal_basis 'copi_reg3' differs from the spec's 'court_order'",
    "purpose_misspelt": "unknown purpose 'reserch'; use one of: direct_care, research",
    "untagged_export": "task 'drop' (FileDropOperator) has no opt-out role in a DAG tagged",
    "not_gated": "is not sent through the opt-out gate",
    "undeclared_scope": "does not declare whether it handles confidential patient information: add tags=[CPI_TAG]",
    "no_cpi_without_reason": "without a reason: declare it with no_cpi(dag, 'why it holds none')",
    "bash_copies_raw": "task 'copy' (BashOperator) has no opt-out role",
    "python_copies_raw": "task 'upload' (_PythonDecoratedOperator) has no opt-out role",
    "research_as_direct_care": "whose spec names purpose 'research', for purpose 'direct_care'",
    "gate_without_sends": "must name the fields that hold the paths it sends",
    "gate_on_task": "the gate cannot see what code sends",
    "broken_spec": "field 'tables[0]': give nhs_number or person_key",
}


@pytest.mark.parametrize(("name", "message"), sorted(BROKEN_DAGS.items()))
def test_broken_dag_is_an_import_error_saying_what_to_add(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch, name: str, message: str
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW__OPTOUT__EXPORT_OPERATORS", "GatedExportOperator,FileDropOperator")
    bag = DagBag(dag_folder=str(BROKEN / f"{name}.py"))
    assert not bag.dags
    (error,) = bag.import_errors.values()
    assert message in error
    assert "docs/add-optout-to-your-dag.md" in error or "Traceback" in error or "InputError" in error


def test_every_broken_dag_is_tested() -> None:
    assert sorted(path.stem for path in BROKEN.glob("*.py")) == sorted(BROKEN_DAGS)


def test_broken_dags_listed_by_the_cli(airflow_db: Path) -> None:
    """What an operator of the cluster sees: `airflow dags list-import-errors` names each broken file."""
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_db),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_db / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(BROKEN),
    }
    listed = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "list-import-errors", "-l", "-o", "plain"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    for name in BROKEN_DAGS:
        assert f"{name}.py" in listed.stdout, listed.stdout + listed.stderr


def test_examples_load_without_import_errors(airflow_db: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    for dag_id, path in EXAMPLES.items():
        bag = DagBag(dag_folder=str(path))
        assert not bag.import_errors, bag.import_errors
        assert dag_id in bag.dags


def test_research_extract_runs_filtered_validated_and_recorded(
    load_dag: Any, seeded: Store, capfd: pytest.CaptureFixture[str]
) -> None:
    run = load_dag(EXAMPLES["research_extract"], "research_extract").test()
    assert _states(run) == {"filter": "success", "validate": "success", "export": "success"}
    (ti, *_) = run.get_task_instances()
    for task_id in ("filter", "validate", "export"):  # the extra links, where Airflow 3's UI reads them
        assert ti.xcom_pull(task_ids=task_id, key="_link_GovernancePageLink").endswith("/optout/")
    (entry,) = Ledger().entries()
    docs = ti.xcom_pull(task_ids="export", key="_link_DataDocsLink")
    assert docs.endswith(f"/optout/data-docs/{entry.id}/index.html")
    logged = capfd.readouterr()
    assert not [n for n in numbers(SAMPLE / "patients.csv") if str(n) in logged.out + logged.err]
    assert entry.disclosure.purpose == "research" and entry.disclosure.validation_ok
    assert entry.disclosure.removed_rows.get("opted_out", 0) > 0
    delivered = next((Path(os.environ["OPTOUT_HOME"]) / "outbox" / "research_extract").iterdir())
    assert np.intersect1d(numbers(delivered / "patients.csv"), opted_out()).size == 0
    assert sorted(p.name for p in delivered.iterdir()) == ["episodes.csv", "patients.csv"]


def test_direct_care_runs_without_filter_or_list(load_dag: Any) -> None:
    assert Store().current() is None
    states = _run(load_dag, EXAMPLES["direct_care_share"], "direct_care_share")
    assert states == {"copy_with_manifest": "success", "share_with_care_team": "success"}
    (entry,) = Ledger().entries()  # direct care is recorded too: what, to whom, how many rows
    assert (entry.disclosure.purpose, entry.disclosure.recipient) == ("direct_care", "Leeds community nursing team")
    assert entry.disclosure.rows_out == entry.disclosure.rows_in > 0


def test_exempt_disclosure_records_its_legal_basis(load_dag: Any) -> None:
    approve_court_order()
    states = _run(load_dag, EXAMPLES["exempt_disclosure"], "exempt_disclosure")
    assert states == {"copy_with_manifest": "success", "export": "success"}
    (entry,) = Ledger().entries()
    assert (entry.disclosure.legal_basis, entry.disclosure.legal_reference) == ("court_order", "HC-ORDER-2026-A17")


APPROVALS = ROOT / "tests" / "dags" / "exempt_approvals.py"


@pytest.mark.parametrize(
    ("approval", "reason"),
    [
        ("expired", "ApprovalRefused: approval 'HC-ORDER-2026-A17' expired on"),
        ("revoked", "ApprovalRefused: approval 'HC-ORDER-2026-A17' was revoked by Data Protection Officer"),
        ("mismatched", "was recorded for legal basis 'copi_reg3', but the spec claims 'court_order'"),
        ("missing", "which governance staff have not recorded"),
    ],
)
def test_an_exemption_without_a_valid_approval_sends_nothing(
    load_dag: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str], approval: str, reason: str
) -> None:
    outbox = tmp_path / "outbox"
    states = _run(load_dag, APPROVALS, "exempt_approvals", {"approval": approval, "outbox": str(outbox)})
    assert states == {"copy_with_manifest": "success", "record_approval": "success", "export": "failed"}, states
    assert any(reason in line for line in capfd.readouterr().out.splitlines()), reason
    assert not outbox.exists() or not any(p.is_file() for p in outbox.rglob("*"))
    assert Ledger().entries() == []


def test_an_exemption_with_a_valid_approval_is_sent(load_dag: Any, tmp_path: Path) -> None:
    states = _run(load_dag, APPROVALS, "exempt_approvals", {"outbox": str(tmp_path / "outbox")})
    assert states["export"] == "success", states
    (entry,) = Ledger().entries()
    assert (entry.disclosure.legal_reference, entry.disclosure.max_age_seconds) == ("HC-ORDER-2026-A17", None)


def test_rows_without_a_number_pass_and_the_rest_are_filtered_as_for_research(
    load_dag: Any, seeded: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import csv
    from datetime import UTC, datetime, timedelta

    from optout.governance.approvals import ApprovalRegister

    monkeypatch.setenv("OPTOUT_MAX_AGE", "48h")
    register = ApprovalRegister()
    expires = (datetime.now(UTC) + timedelta(days=30)).date()
    register.add(
        "NN-REG-2026-01", basis="no_nhs_number_disproportionate", approved_by="CG", expires=expires, recorded_by="IG"
    )
    register.dispose()
    outbox = tmp_path / "outbox"
    dag = ROOT / "tests" / "dags" / "no_number_exemption.py"
    states = _run(load_dag, dag, "no_number_exemption", {"outbox": str(outbox)})
    assert states == {"filter": "success", "validate": "success", "export": "success"}, states
    (sent,) = outbox.glob("*/patients.csv")
    with sent.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert any(not row["nhs_number"] for row in rows)  # P900, who has no number, passes
    kept = numbers(sent)
    assert len(kept) and not np.isin(kept, opted_out()).any()  # every opted-out person is gone
    (entry,) = Ledger().entries()
    assert entry.disclosure.legal_basis == "no_nhs_number_disproportionate" and entry.disclosure.validation_ok
    assert entry.disclosure.max_age_seconds == 48 * 3600 and entry.disclosure.removed_rows["opted_out"] > 0


CHECKS = ROOT / "tests" / "dags" / "send_time_checks.py"


def test_send_time_checks_pass_when_nothing_changed(
    load_dag: Any, seeded: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPTOUT_MAX_AGE", "48h")
    states = _run(load_dag, CHECKS, "send_time_checks", {"outbox": str(tmp_path / "outbox")})
    assert states["export"] == states["drop"] == "success", states
    entries = Ledger().entries()
    assert len(entries) == 2
    assert {e.disclosure.max_age_seconds for e in entries} == {48 * 3600}  # the limit each was checked against
    assert (tmp_path / "outbox" / "drop" / "patients.csv").is_file()


@pytest.mark.parametrize(
    ("tamper", "validated", "reason"),
    [
        ("plant", "failed", "; do not send it"),
        ("alter", "success", "episodes.csv changed after validation"),
        ("stale", "success", "StaleListError"),
        ("replace", "success", "was filtered with list version 1, but version 2 is current now"),
    ],
)
def test_gated_exports_refuse_and_send_nothing(
    load_dag: Any,
    seeded: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    tamper: str,
    validated: str,
    reason: str,
) -> None:
    monkeypatch.setenv("OPTOUT_MAX_AGE", "48h")  # restored after the `stale` tamper shortens it
    outbox = tmp_path / "outbox"
    states = _run(load_dag, CHECKS, "send_time_checks", {"tamper": tamper, "outbox": str(outbox)})
    assert states["validate"] == validated
    assert states["tamper_late"] == "success"
    assert states["export"] == states["drop"] == "failed", states
    refusals = [line for line in capfd.readouterr().out.splitlines() if "AirflowFailException:" in line]
    assert sum(reason in line for line in refusals) >= 2, refusals  # both exports, for this reason
    assert not outbox.exists() or not any(p.is_file() for p in outbox.rglob("*"))
    assert Ledger().entries() == []


def test_dag_code_cannot_loosen_the_maximum_age(load_dag: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DAG file sets OPTOUT_MAX_AGE=3650d and max_age='3650d': a three-day-old list is still stale."""
    from datetime import timedelta

    monkeypatch.setenv("OPTOUT_MAX_AGE", "48h")  # restored after the DAG file overwrites it
    seed(Store(), age=timedelta(days=3))
    states = _run(load_dag, ROOT / "tests" / "dags" / "loosen_max_age.py", "loosen_max_age")
    assert states["filter"] == "failed"
    assert states["export"] != "success"
    assert Ledger().entries() == []
