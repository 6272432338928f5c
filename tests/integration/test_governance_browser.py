"""The governance page in a real headless Chromium against a real ``airflow api-server`` started here:
anonymous access refused, log in through Airflow's own login form, see the version and counts, make the
list stale and see STALE; the HTML never holds a number of the test cohort."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from governance_data import NUMBERS, seed

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
USER, PASSWORD = "governance", "correct-horse-battery"
NOW = datetime.now(UTC)


def service_missing(config: pytest.Config, what: str) -> None:
    """tests/conftest.py's ``service_missing``, reached through pytest (importing conftest would rerun it)."""
    here = str(Path(__file__).with_name("conftest.py"))
    integration = next(p for p in config.pluginmanager.get_plugins() if getattr(p, "__file__", None) == here)
    integration.root_conftest(config).service_missing(what)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except urllib.error.URLError:
        return 0  # not listening yet


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    from optout.governance.flows import FlowRegister

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    seed(url, tmp_path / "docs", NOW)
    register = FlowRegister(url)
    register.record(
        "-/cancer-audit",
        dsa="DSA-2025-088",
        dpia="DPIA-0199",
        approved_by="Caldicott Guardian",
        review_date=date(2026, 1, 31),
    )
    register.dispose()
    return url


@pytest.fixture
def api_server(airflow_db: Path, store_url: str, tmp_path: Path) -> Iterator[str]:
    """A real Airflow API server with the simple auth manager and one viewer account."""
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    port = free_port()
    env = {
        **os.environ,  # the private AIRFLOW_HOME and bundles tests/conftest.py set at import
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": os.urandom(32).hex(),
        "AIRFLOW__API__SECRET_KEY": os.urandom(16).hex(),
        "OPTOUT_STORE_URL": store_url,
        "OPTOUT_MAX_AGE": "48h",
    }
    log = open(tmp_path / "api-server.log", "wb")  # noqa: SIM115 - closed below, after the process
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while status_of(f"{base}/api/v2/monitor/health") != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"airflow api-server did not start: {(tmp_path / 'api-server.log').read_text()[-3000:]}")
            time.sleep(1)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.fixture
def browser(pytestconfig: pytest.Config) -> Iterator[object]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        service_missing(pytestconfig, "chromium and chromedriver (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        service_missing(pytestconfig, "selenium (requirements-test.txt)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,1400")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def make_stale(store_url: str) -> None:
    """Move every check three days into the past, as if the refresh had stopped running."""
    from optout.store_tables import versions_table

    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        for row in conn.execute(sa.select(versions_table.c.id, versions_table.c.checked_at)).all():
            if row.checked_at is not None:
                conn.execute(
                    versions_table.update()
                    .where(versions_table.c.id == row.id)
                    .values(checked_at=row.checked_at - timedelta(days=3))
                )
    engine.dispose()


def assert_no_cohort_number(html: str) -> None:
    digits = set(re.findall(r"\d{10}", re.sub(r"[\s,-]", "", html)))
    assert not digits & {str(n) for n in NUMBERS}


def test_governance_page_in_a_browser(api_server: str, browser, store_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    page = f"{api_server}/optout/"
    assert status_of(page) == 401
    assert status_of(f"{api_server}/optout/data-docs/1/index.html") == 401

    browser.get(page)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "log in" in body.lower() and "University of Leeds" not in body

    browser.find_element(By.LINK_TEXT, "Log in").click()
    wait = WebDriverWait(browser, 60)
    wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys(USER)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: d.current_url.rstrip("/").endswith("/optout") and "FRESH" in d.page_source)

    text = browser.find_element(By.TAG_NAME, "main").text
    assert "National Data Opt-out" in text
    facts = {
        row.find_element(By.TAG_NAME, "th").text: row.find_element(By.TAG_NAME, "td").text
        for row in browser.find_elements(By.CSS_SELECTOR, "table.facts tr")
    }
    assert facts["List version"] == "3" and facts["State"] == "FRESH"
    assert "1 reply waiting for approval" in text
    assert "200" in text and "186" in text and "14" in text  # cohort, cleared, opted out of version 3
    assert "University of Leeds" in text and "passed" in text and "FAILED" in text
    assert "Flows and their reviews" in text and "OVERDUE" in text and "DSA-2025-088" in text
    assert "Nightly refresh" in text and "disclosure(s) match" in text
    assert_no_cohort_number(browser.page_source)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 400, 6000))
    browser.save_screenshot(os.environ.get("OPTOUT_SCREENSHOT") or str(tmp_path / "governance-page.png"))
    browser.set_window_size(1280, 1400)

    download = browser.find_element(By.CSS_SELECTOR, "form[action='evidence-pack']")
    assert download.find_element(By.NAME, "since").get_attribute("value")
    pack = browser.execute_script(
        "const r = await fetch('evidence-pack?since=2026-01-01&format=html'); return [r.status, await r.text()];"
    )
    assert pack[0] == 200 and "Opt-out evidence pack" in pack[1]
    assert_no_cohort_number(pack[1])

    browser.find_element(By.LINK_TEXT, "Data Docs").click()
    wait.until(lambda d: "the data docs" in d.page_source)

    make_stale(store_url)
    browser.get(page)
    assert "STALE" in browser.find_element(By.TAG_NAME, "main").text
    assert "FRESH" not in browser.page_source
    assert_no_cohort_number(browser.page_source)

    browser.get(f"{api_server}/api/v2/plugins")
    assert "National Data Opt-out" in browser.page_source  # the navigation entry Airflow's UI shows

    browser.delete_all_cookies()
    browser.get(page)
    assert "STALE" not in browser.page_source and "log in" in browser.page_source.lower()
