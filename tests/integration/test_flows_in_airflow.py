"""The register of flows in real Airflow: declarations read from serialized DAGs, and an overdue flow's
export refused under dag.test() when ``[optout] block_overdue_flows`` is set."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from optout.governance.flows import FlowRegister
from optout.ledger import Ledger
from tests.sample_extract import approve_court_order

pytestmark = pytest.mark.integration
DAGS = Path(__file__).resolve().parents[2] / "dags"
TEST_DAGS = DAGS.parent / "tests" / "dags"


def test_flows_are_read_from_the_serialized_dags(load_dag: Any) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    from optout.airflow.flows import declared_flows

    serialized = [
        DagSerialization.to_dict(load_dag(DAGS / f"{dag_id}.py", dag_id))
        for dag_id in ("research_extract", "exempt_disclosure")
    ]
    flows = {flow.flow: flow for flow in declared_flows(serialized)}
    assert set(flows) == {"research_extract/export", "exempt_disclosure/export"}
    research, exempt = flows["research_extract/export"], flows["exempt_disclosure/export"]
    assert (research.purpose, research.recipient, research.scope) == (
        "research",
        "University research team",
        "confidential patient information",
    )
    assert research.extract and research.extract.endswith("research_extract.yaml")
    assert (exempt.legal_basis, exempt.legal_reference) == ("court_order", "HC-ORDER-2026-A17")


def test_internal_tasks_and_declared_scopes_are_read_from_the_serialized_dags(load_dag: Any) -> None:
    """The not-covered list from what Airflow stores: each internal task of a CPI DAG with its reason, and
    a DAG declared as holding no patient information with the reason it gave."""
    from airflow.serialization.serialized_objects import DagSerialization

    from optout.airflow.flows import uncovered

    serialized = [
        DagSerialization.to_dict(load_dag(TEST_DAGS / "send_time_checks.py", "send_time_checks")),
        DagSerialization.to_dict(load_dag(DAGS / "optout_retention.py", "optout_retention")),
    ]
    found = {(u.dag_id, u.task_id): u.reason for u in uncovered(serialized)}
    assert found == {
        ("send_time_checks", "tamper_early"): "internal (no data leaves): the test's tamper step",
        ("send_time_checks", "tamper_late"): "internal (no data leaves): the test's tamper step: edits files in place",
        ("optout_retention", None): "declared as handling no confidential patient information: deletes files and "
        "old list versions past their retention; reads and sends no patient data",
    }


def _export_state(load_dag: Any) -> str:
    approve_court_order()
    run = load_dag(DAGS / "exempt_disclosure.py", "exempt_disclosure").test()
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}["export"]


def test_an_overdue_flow_sends_nothing_when_overdue_flows_are_blocked(
    load_dag: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    register = FlowRegister()
    register.record(
        "exempt_disclosure/export",
        dsa="DSA-12",
        dpia="DPIA-4",
        approved_by="Caldicott Guardian",
        review_date=date.today() - timedelta(days=1),
    )
    assert _export_state(load_dag) == "success"  # not configured: the overdue flow is shown, not blocked
    monkeypatch.setenv("AIRFLOW__OPTOUT__BLOCK_OVERDUE_FLOWS", "true")
    assert _export_state(load_dag) == "failed"
    assert len(Ledger().entries()) == 1  # the refused run recorded nothing
    register.record(
        "exempt_disclosure/export",
        dsa="DSA-12",
        dpia="DPIA-4",
        approved_by="Caldicott Guardian",
        review_date=date.today() + timedelta(days=365),
    )
    assert _export_state(load_dag) == "success"
    assert len(Ledger().entries()) == 2
    register.dispose()


def test_the_nightly_retention_dag_deletes_and_records(load_dag: Any, tmp_path: Path) -> None:
    import os
    import time

    from optout import config

    old = config.data_dir() / "extracts" / "research_extract" / "manual__old"
    old.mkdir(parents=True)
    moment = time.time() - 60 * 86400
    os.utime(old, (moment, moment))
    run = load_dag(DAGS / "optout_retention.py", "optout_retention").test()
    assert {ti.task_id: str(ti.state) for ti in run.get_task_instances()} == {"apply_retention": "success"}
    assert not old.exists()
    (event,) = Ledger().events("retention")
    assert event.event.subject == "extracts/research_extract/manual__old"
