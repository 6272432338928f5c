"""The register of flows: governance records, the merge with declarations and the ledger, the review check."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from governance_data import seed
from typer.testing import CliRunner

from optout.cli import app
from optout.errors import InputError
from optout.governance.flows import (
    DUE,
    OK,
    OVERDUE,
    UNREVIEWED,
    DeclaredFlow,
    FlowRegister,
    FlowReviewOverdue,
    build_register,
    require_reviewed,
)

TODAY = date(2026, 6, 1)
SET = ("flows", "set")
OLD = ("--review", "2020-01-31")
RESEARCH = DeclaredFlow("research_extract", "export", "research", "specs/r.yaml", recipient="University of Leeds")


@pytest.fixture
def url(store_url: str) -> str:
    """Each test on SQLite and on PostgreSQL (the store's two backends)."""
    return store_url


def record(url: str, flow: str, review: date) -> None:
    register = FlowRegister(url)
    register.record(flow, dsa="DSA-7", dpia="DPIA-3", approved_by="Caldicott Guardian", review_date=review)
    register.dispose()


def test_the_newest_record_of_a_flow_wins_and_the_history_stays(url: str) -> None:
    record(url, "research_extract/export", TODAY - timedelta(days=1))
    record(url, "research_extract/export", TODAY + timedelta(days=200))
    register = FlowRegister(url)
    assert register.reviews()["research_extract/export"].review_date == TODAY + timedelta(days=200)
    register.dispose()
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from optout_flow_reviews")).scalar() == 2
    engine.dispose()


def test_status_follows_the_review_date(url: str) -> None:
    (flow,) = build_register([RESEARCH], url)
    assert flow.status(TODAY) == UNREVIEWED
    for days, expected in ((-1, OVERDUE), (0, DUE), (30, DUE), (31, OK)):
        record(url, RESEARCH.flow, TODAY + timedelta(days=days))
        (flow,) = build_register([RESEARCH], url)
        assert flow.status(TODAY) == expected, days


def test_the_register_joins_declarations_reviews_and_the_ledger(url: str, tmp_path: Path) -> None:
    seed(url, tmp_path / "docs", datetime.now(UTC))  # two disclosures with no DAG: flow "-/cancer-audit"
    record(url, "old_dag/export", TODAY)  # reviewed, but no DAG declares it any more
    flows = {flow.flow: flow for flow in build_register([RESEARCH], url)}
    assert set(flows) == {"research_extract/export", "-/cancer-audit", "old_dag/export"}
    assert flows["research_extract/export"].recipient == "University of Leeds"
    assert flows["research_extract/export"].disclosures == 0
    ledger_only = flows["-/cancer-audit"]
    assert ledger_only.declared is None and ledger_only.disclosures == 2 and ledger_only.purpose == "research"
    assert flows["old_dag/export"].review is not None and flows["old_dag/export"].declared is None


def test_an_overdue_or_unreviewed_flow_is_refused_with_the_command_to_fix_it(url: str) -> None:
    with pytest.raises(FlowReviewOverdue, match=r"no governance review recorded.*optout flows set research_extract/"):
        require_reviewed("research_extract", "export", url, today=TODAY)
    record(url, "research_extract/export", TODAY - timedelta(days=1))
    with pytest.raises(FlowReviewOverdue, match="was due for review on 2026-05-31"):
        require_reviewed("research_extract", "export", url, today=TODAY)
    record(url, "research_extract/export", TODAY)
    assert require_reviewed("research_extract", "export", url, today=TODAY).review_date == TODAY


@pytest.mark.parametrize(
    ("flow", "field"), [("no-slash", "FLOW"), ("a/b/c", "FLOW"), ("/export", "FLOW"), ("dag/task", "--dsa")]
)
def test_bad_records_are_refused(url: str, flow: str, field: str) -> None:
    register = FlowRegister(url)
    with pytest.raises(InputError, match=field):
        register.record(flow, dsa=" ", dpia="D", approved_by="A", review_date=TODAY)
    register.dispose()


def test_the_cli_records_and_lists_flows(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTOUT_STORE_URL", url)
    monkeypatch.setattr("optout.cli.flows.declared_or_warn", lambda: [RESEARCH])
    runner = CliRunner()
    done = runner.invoke(
        app,
        [*SET, "research_extract/export", "--dsa", "DSA-7", "--dpia", "DPIA-3", "--approved-by", "CG", *OLD],
    )
    assert done.exit_code == 0, done.output
    listed = runner.invoke(app, ["flows", "list", "--json"])
    (row,) = json.loads(listed.output)
    assert row["status"] == OVERDUE and row["dsa"] == "DSA-7" and row["recipient"] == "University of Leeds"
    assert "OVERDUE" in runner.invoke(app, ["flows", "list"]).output
    bad = runner.invoke(
        app, ["flows", "set", "x/y", "--dsa", "a", "--dpia", "b", "--approved-by", "c", "--review", "31/01/2020"]
    )
    assert bad.exit_code != 0
