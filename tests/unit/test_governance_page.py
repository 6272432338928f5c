"""The governance page: pure content helpers, then the FastAPI app with FastAPI's TestClient."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import HTTPException, Request
from fastapi.testclient import TestClient
from governance_data import NUMBERS, seed

from optout.airflow.page import create_app
from optout.airflow.tagging import NO_CPI_NOTE
from optout.governance import overview, render

NOW = datetime.now(UTC)


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    seed(url, tmp_path / "docs", NOW)
    return url


def assert_no_cohort_number(html: str) -> None:
    found = set(re.findall(r"\d{10}", html.replace(",", "").replace(" ", "")))
    assert not found & {str(n) for n in NUMBERS}


def test_the_page_shows_a_fresh_list_refreshes_and_disclosures(url: str) -> None:
    view = overview(url, now=NOW)
    assert view.fresh and view.current is not None and view.current.id == 3
    assert [v.id for v in view.waiting] == [4]
    assert view.shares == [(1, 0.05), (2, 0.06), (3, 0.07)]
    html = render(view)
    assert "FRESH" in html and "STALE" not in html
    assert "1 reply waiting for approval</strong> (version 4)" in html
    assert "opted-out share 50.00% (100 of 200)" in html and "above the 25.00% any real reply shows" in html
    assert "7.0%" in html and "<svg" in html and 'role="img"' in html
    assert "University of Leeds" in html and "opted out 60" in html and "FAILED" in html
    assert 'href="data-docs/1/index.html"' in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Ledger: <strong" in html and "intact" in html
    assert_no_cohort_number(html)


def test_a_stale_list_says_stale(url: str) -> None:
    html = render(overview(url, now=NOW + timedelta(days=3)))
    assert "STALE" in html and "FRESH" not in html


def test_an_empty_store_says_no_list(tmp_path: Path) -> None:
    html = render(overview(f"sqlite:///{tmp_path / 'empty.sqlite'}"))
    assert "NO LIST" in html and "Nothing has been disclosed yet" in html


def test_a_tampered_ledger_is_shown(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER disclosure_ledger_no_update"))
        conn.execute(sa.text("UPDATE disclosure_ledger SET rows_out = 1 WHERE id = 1"))
    engine.dispose()
    assert "LEDGER TAMPERED" in render(overview(url))


def only_with_token(request: Request) -> None:
    """Stands in for Airflow's auth dependency in app-level tests (the browser test uses the real one)."""
    if request.headers.get("authorization") != "Bearer good":
        raise HTTPException(401, "Not authenticated")


def test_the_app_serves_the_page_and_data_docs_to_a_logged_in_user(url: str) -> None:
    client = TestClient(create_app(url, authorize=only_with_token))
    auth = {"authorization": "Bearer good"}
    page = client.get("/", headers=auth)
    assert page.status_code == 200 and "National Data Opt-out" in page.text
    docs = client.get("/data-docs/1/index.html", headers=auth)
    assert docs.status_code == 200 and "the data docs" in docs.text
    assert client.get("/data-docs/1/%2e%2e/store.sqlite", headers=auth).status_code == 404
    assert client.get("/data-docs/9/index.html", headers=auth).status_code == 404


def test_the_app_refuses_anonymous_requests(url: str) -> None:
    client = TestClient(create_app(url, authorize=only_with_token))
    for path in ("/", "/data-docs/1/index.html"):
        response = client.get(path)
        assert response.status_code == 401
        assert "log in" in response.text.lower() and "University" not in response.text


def test_airflows_own_authentication_guards_the_page(url: str, airflow_db: Path) -> None:
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    manager = init_auth_manager()
    client = TestClient(create_app(url))
    assert client.get("/").status_code == 401
    assert client.get("/", headers={"authorization": "Bearer not-a-jwt"}).status_code in (401, 403)
    assert client.get("/", cookies={"_token": "forged"}).status_code in (401, 403)
    token = manager.generate_jwt(SimpleAuthManagerUser(username="governance", role="viewer"))
    page = client.get("/", headers={"authorization": f"Bearer {token}"})
    assert page.status_code == 200 and "FRESH" in page.text


def test_the_plugin_declares_the_app_and_the_menu_entry() -> None:
    from optout.airflow.plugin import OptOutPlugin

    assert OptOutPlugin.fastapi_apps[0]["url_prefix"] == "/optout"
    assert OptOutPlugin.external_views[0]["name"] == "National Data Opt-out"
    assert OptOutPlugin.external_views[0]["destination"] == "nav"


@pytest.fixture
def season(tmp_path: Path) -> str:
    from include.demo_history import seed_history

    url = f"sqlite:///{tmp_path / 'season.sqlite'}"
    seed_history(url, NOW, days=100, cohort=1000)
    return url


def test_disclosures_are_filtered_paged_and_totalled(season: str) -> None:
    from optout.governance.overview import DisclosureFilter

    everything = overview(season, now=NOW)
    assert len(everything.disclosures) == 25 and everything.pages > 1
    research = overview(season, now=NOW, filter=DisclosureFilter(purpose="research", page=1, per_page=5))
    assert all(e.disclosure.purpose == "research" for e in research.disclosures)
    assert research.matching.disclosures < everything.matching.disclosures
    assert research.matching.rows_sent == sum(
        e.disclosure.rows_out
        for e in overview(season, now=NOW, filter=DisclosureFilter(purpose="research", per_page=999)).disclosures
    )
    html = render(research)
    assert "disclosure(s) match" in html and "older &rarr;" in html and 'value="research" selected' in html
    assert '<a href="/dags/research_extract/runs/scheduled__' in html
    exempt = render(overview(season, now=NOW, filter=DisclosureFilter(purpose="exempt")))
    assert "not applicable" in exempt and "FAILED" not in exempt


def test_flows_show_their_review_dates_and_overdue_ones_in_red(season: str) -> None:
    html = render(overview(season, now=NOW))
    row = re.search(r"<tr class=overdue><td>planning_extract/export</td>.*?</tr>", html)
    assert row and "OVERDUE" in row.group(0) and "DSA-2025-088" in row.group(0)
    assert "<td>research_extract/export</td>" in html and "in review" in html


def test_approvals_show_with_their_expiry_and_lapsed_ones_marked(season: str) -> None:
    html = render(overview(season, now=NOW))
    section = html[html.index('id="approvals"') : html.index('id="uncovered"')]
    assert re.search(r"<tr><td>HC-ORDER-2026-A17</td><td>court_order</td>.*?<td>valid</td>", section)
    assert re.search(r"<tr class=overdue><td>HC-ORDER-2025-B03</td>.*?EXPIRED", section)
    assert re.search(r"<tr class=overdue><td>CAG 24/CAG/0107</td>.*?REVOKED", section)


def test_each_disclosure_shows_the_limit_it_was_checked_against(season: str) -> None:
    from optout.governance.overview import DisclosureFilter

    html = render(overview(season, now=NOW, filter=DisclosureFilter(purpose="research")))
    assert re.search(r"<td>\d+ \([^)]* of 2d\)</td>", html)


def test_the_nightly_refresh_state_is_shown_next_to_the_list(url: str) -> None:
    from optout.governance.overview import NightlyState

    paused = NightlyState(found=True, paused=True, last_state="failed", last_run=NOW, last_failure=NOW)
    html = render(overview(url, now=NOW, nightly=paused))
    assert "PAUSED" in html and "Last failure" in html
    assert "NOT DEPLOYED" in render(overview(url, now=NOW, nightly=NightlyState(found=False)))
    assert "could not be read" in render(overview(url, now=NOW))


def test_the_evidence_pack_is_downloaded_from_the_page(season: str) -> None:
    client = TestClient(create_app(season, authorize=only_with_token))
    auth = {"authorization": "Bearer good"}
    since = f"{NOW - timedelta(days=100):%Y-%m-%d}"
    pdf = client.get(f"/evidence-pack?since={since}&format=pdf", headers=auth)
    assert (
        pdf.status_code == 200
        and pdf.content.startswith(b"%PDF")
        and "attachment" in pdf.headers["content-disposition"]
    )
    html = client.get(f"/evidence-pack?since={since}&format=html", headers=auth)
    assert "Opt-out evidence pack" in html.text
    assert client.get("/evidence-pack?since=yesterday", headers=auth).status_code == 400
    assert client.get(f"/evidence-pack?since={since}").status_code == 401
    page = client.get("/?purpose=planning&page=2", headers=auth)
    assert page.status_code == 200 and "Evidence pack" in page.text


def test_what_is_not_covered_is_listed(url: str) -> None:
    from optout.airflow.flows import uncovered

    internal = {"__var": {"task_id": "stage", "params": [["optout", {"default": {"internal": "copies to staging"}}]]}}
    exported = {"__var": {"task_id": "send", "params": [["optout", {"default": {"purpose": "research"}}]]}}
    serialized = [
        {
            "dag": {
                "dag_id": "research_extract",
                "tags": ["confidential-patient-information"],
                "tasks": [internal, exported],
            }
        },
        {"dag": {"dag_id": "optout_retention", "tags": ["optout"], "tasks": []}},
        {"dag": {"dag_id": "legacy_finance", "tags": [], "tasks": []}},
        {
            "dag": {
                "dag_id": "weather",
                "tags": ["no-confidential-patient-information"],
                "doc_md": "Forecasts.\n\n" + NO_CPI_NOTE + "met office data only",
                "tasks": [],
            }
        },
    ]
    found = {(u.dag_id, u.task_id): u.reason for u in uncovered(serialized, ["legacy_*"])}
    assert set(found) == {
        ("optout_retention", None),
        ("legacy_finance", None),
        ("weather", None),
        ("research_extract", "stage"),
    }
    assert "grandfathered" in found["legacy_finance", None]
    assert found["weather", None].endswith("no confidential patient information: met office data only")
    assert found["research_extract", "stage"] == "internal (no data leaves): copies to staging"
    html = render(overview(url, now=NOW, uncovered=uncovered(serialized, ["legacy_*"])))
    assert "Not covered by the opt-out checks" in html and "<td>legacy_finance</td>" in html
    assert "<td>stage</td>" in html and "copies to staging" in html
    assert "could not be read" in render(overview(url, now=NOW))
