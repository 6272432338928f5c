"""The evidence pack: built from a synthetic season of refreshes and disclosures, rendered to PDF and HTML,
read back (pdftotext) and scanned for NHS numbers; its facts checked against what was seeded."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from include.demo_history import seed_history
from optout.governance.document import Alert, Table
from optout.governance.evidence import build, read_facts
from optout.governance.pack_html import render_html
from optout.governance.pack_pdf import render_pdf
from optout.nhs_number import synthetic
from tests.conftest import service_missing

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
COHORT = 1000
_NUMBER_LIKE = re.compile(r"(?<!\d)\d{3}[ -]?\d{3}[ -]?\d{4}(?!\d)")


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path_factory.mktemp('pack') / 'store.sqlite'}"
    seed_history(url, NOW, days=100, cohort=COHORT)
    facts = read_facts(NOW - timedelta(days=100), NOW, url=url, blocked=[NOW - timedelta(days=58)], now=NOW)
    return facts, build(facts, "Northshire Teaching Hospitals")


def cohort_numbers_in(text: str) -> int:
    found = [int(re.sub(r"[ -]", "", m)) for m in _NUMBER_LIKE.findall(text)]
    return int(np.isin(np.array(found, dtype=np.int64), synthetic(COHORT)).sum()) if found else 0


def tables(doc) -> dict[str, Table]:  # type: ignore[no-untyped-def]
    return {b.caption: b for s in doc.sections for b in s.blocks if isinstance(b, Table)}


def test_the_pack_holds_every_section_with_the_seeded_facts(document) -> None:  # type: ignore[no-untyped-def]
    facts, doc = document
    assert [s.title for s in doc.sections][:4] == [
        "Summary",
        "Register of flows",
        "Refreshes and the list's freshness",
        "Disclosures",
    ]
    found = tables(doc)
    # The two outages in the seeded history, and the night whose reply was rejected (night 80): the list in
    # use was then two nights old, and its age counts from its request, an hour before its check, so it was
    # stale for the hour before the next refresh was published.
    assert len(found["Stale periods"].rows) == 3
    assert found["Stale periods"].rows[1][2] == "1h"
    assert sum(int(r[3]) for r in found["Stale periods"].rows) == 1  # the refused export falls in one
    assert all(r[4] == "0" for r in found["Stale periods"].rows)  # nothing left while stale
    by_month = found["By month"].rows
    assert sum(int(r[1].replace(",", "")) for r in by_month) == len(facts.entries) > 0
    assert {r[3] for r in found["Replies held back"].rows} == {"approved and published", "rejected"}
    assert {r[5] for r in found["Replies held back"].rows} == {"Caldicott Guardian", "Information Governance Lead"}
    assert any(r[0] == "court_order" and r[1] == "HC-ORDER-2026-A17" for r in found["Exemptions used"].rows)
    (cited,) = found["Approvals cited"].rows  # the approval behind them, as governance staff recorded it
    assert cited[:5] == ["HC-ORDER-2026-A17", "court_order", "Caldicott Guardian", cited[3], "valid"]
    flows = {r[0]: r for r in found["Flows"].rows}
    assert flows["planning_extract/export"][7] == "overdue"
    alerts = [b.text for s in doc.sections for b in s.blocks if isinstance(b, Alert)]
    assert any("overdue for review" in a for a in alerts)
    assert all(r[7] in ("passed", "not applicable") for r in found["Every disclosure"].rows)
    assert {r[2] for r in found["Every disclosure"].rows if r[5] == "—"} <= {"exempt"}  # exempt copies: not counted


def test_the_pdf_is_paginated_with_contents_and_holds_no_nhs_number(document, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    if not shutil.which("pdftotext"):
        service_missing("pdftotext (apt-get install poppler-utils)")
    _, doc = document
    pdf = tmp_path / "pack.pdf"
    pdf.write_bytes(render_pdf(doc))
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True).stdout
    pages = text.split("\f")
    assert len([p for p in pages if p.strip()]) >= 8
    assert "Contents" in pages[0] and "Northshire Teaching Hospitals" in pages[0]
    assert re.search(r"4\. Disclosures\s+\d+", pages[0])  # the table of contents has page numbers
    assert all("page " in p for p in pages if p.strip())
    assert cohort_numbers_in(text) == 0


def test_the_html_holds_the_same_and_no_nhs_number(document) -> None:  # type: ignore[no-untyped-def]
    _, doc = document
    html = render_html(doc)
    assert html.count("<svg") == 2 and "Ledger integrity" in html and "<script" not in html
    assert cohort_numbers_in(html) == 0


def test_the_cli_writes_the_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from optout.cli import app

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    seed_history(url, datetime.now(UTC), days=10, cohort=COHORT)
    monkeypatch.setenv("OPTOUT_STORE_URL", url)
    monkeypatch.setattr("optout.cli.report.declared_or_warn", lambda: [])
    monkeypatch.setattr("optout.cli.report.refused_or_warn", lambda since, until: [])
    since = f"{datetime.now(UTC) - timedelta(days=10):%Y-%m-%d}"
    done = CliRunner().invoke(app, ["report", "--since", since, "--out", str(tmp_path / "pack.html")])
    assert done.exit_code == 0, done.output
    assert "Opt-out evidence pack" in (tmp_path / "pack.html").read_text()
    bad = CliRunner().invoke(app, ["report", "--since", since, "--out", str(tmp_path / "pack.docx")])
    assert bad.exit_code != 0 and not (tmp_path / "pack.docx").exists()


def test_who_decides_a_quarantined_reply_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from governance_data import seed
    from typer.testing import CliRunner

    from optout.cli import app
    from optout.governance.decisions import decisions

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    seed(url, tmp_path / "docs", datetime.now(UTC))  # version 4 is quarantined
    monkeypatch.setenv("OPTOUT_STORE_URL", url)
    done = CliRunner().invoke(app, ["check", "reject", "4", "--by", "Dr A Guardian"])
    assert done.exit_code == 0, done.output
    (decision,) = decisions(url).values()
    assert (decision.version_id, decision.decision, decision.by) == (4, "rejected", "Dr A Guardian")
