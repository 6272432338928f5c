"""Airflow's own UI in a real headless Chromium against a real ``airflow api-server``: the home page shows
no plugin import error, and a research extract's export task shows our extra links (the governance page
and its proof's Data Docs). ``OPTOUT_SCREENSHOT_DIR`` keeps the screenshots (docs/ holds the last ones)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from optout.store import Store
from tests.integration.test_governance_browser import (  # noqa: F401 - fixtures
    PASSWORD,
    USER,
    api_server,
    browser,
    store_url,
)
from tests.sample_extract import seed

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _shot(driver: Any, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("OPTOUT_SCREENSHOT_DIR") or tmp_path)
    driver.save_screenshot(str(folder / name))


def test_home_has_no_plugin_error_and_the_export_shows_its_links(
    api_server: str,  # noqa: F811
    browser: Any,  # noqa: F811
    load_dag: Any,
    tmp_path: Path,
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    seed(Store())
    run = load_dag(ROOT / "dags" / "research_extract.py", "research_extract").test()
    assert {ti.task_id: str(ti.state) for ti in run.get_task_instances()}["export"] == "success"

    wait = WebDriverWait(browser, 90, ignored_exceptions=(StaleElementReferenceException,))  # the UI re-renders
    browser.get(f"{api_server}/")
    wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys(USER)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: "Welcome" in d.find_element(By.TAG_NAME, "body").text)
    wait.until(lambda d: "Health" in d.find_element(By.TAG_NAME, "body").text)
    home = browser.find_element(By.TAG_NAME, "body").text
    assert "Plugin Import Error" not in home, home
    # The session's Airflow also parses tests/dags (broken on purpose): the home page counts their import
    # errors too, so the project's own DAGs are checked by their bundle.
    assert _import_errors("dags-folder") == [], "the project's DAGs have import errors"
    _shot(browser, "airflow-home.png", tmp_path)

    browser.get(f"{api_server}/dags/research_extract/runs/{quote(run.run_id, safe='')}/tasks/export/details")
    try:
        wait.until(lambda d: "Proof (Data Docs)" in d.find_element(By.TAG_NAME, "body").text)
    finally:
        _shot(browser, "export-task-links.png", tmp_path)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "National Data Opt-out" in body


def _import_errors(bundle: str) -> list[str]:
    """The files of ``bundle`` that Airflow recorded as failing to import (what the home page counts)."""
    import sqlalchemy as sa
    from airflow.models.errors import ParseImportError
    from airflow.utils.session import create_session

    with create_session() as session:
        query = sa.select(ParseImportError.filename).where(ParseImportError.bundle_name == bundle)
        return [str(name) for name in session.scalars(query)]
