"""The governance page: pure content helpers, then the FastAPI app with FastAPI's TestClient."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi import HTTPException, Request
from fastapi.testclient import TestClient

from optout.airflow.page import create_app
from optout.errors import SuspiciousReplyError
from optout.governance import overview, render
from optout.ledger import Disclosure, Ledger
from optout.nhs_number import check_digit_ok
from optout.store import Store

NOW = datetime.now(UTC)


def cohort_numbers(count: int) -> np.ndarray:
    candidates = np.arange(9_990_000_000, 9_990_000_000 + count * 20, dtype=np.int64)
    return candidates[check_digit_ok(candidates)][:count]


NUMBERS = cohort_numbers(200)


def refresh(store: Store, opted_out: int, checked_at: datetime, **kwargs: object) -> None:
    version = store.record_request(NUMBERS)
    store.import_reply(version.id, NUMBERS[opted_out:], checked_at=checked_at, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def url(tmp_path: Path) -> str:
    """Three published refreshes (5%, 6%, 7% opted out), one quarantined reply, two disclosures."""
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    store = Store(url)
    for i, opted_out in enumerate((10, 12, 14)):
        refresh(store, opted_out, NOW - timedelta(hours=30 - 10 * i))
    with pytest.raises(SuspiciousReplyError):
        refresh(store, 100, NOW - timedelta(minutes=5))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.html").write_text("<html>the data docs</html>")
    ledger = Ledger(url)
    for recipient, ok in (("University of Leeds", True), ("<script>alert(1)</script>", False)):
        ledger.append(
            Disclosure(
                extract="cancer-audit",
                purpose="research",
                recipient=recipient,
                version_id=3,
                version_checked_at=NOW - timedelta(hours=10),
                rows_in=1000,
                rows_out=930,
                removed_rows={"opted_out": 60, "unchecked": 10, "missing": 0},
                removed_people=25,
                validation_ok=ok,
                output_hashes={"patients.csv": "b" * 64},
                legal_basis=None,
                data_docs=str(docs / "index.html"),
            )
        )
    store.dispose()
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
    assert "1 reply waiting for approval" in html
    assert "7.0%" in html and "<svg" in html and 'role="img"' in html
    assert "University of Leeds" in html and "opted_out 60" in html and "FAILED" in html
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
