"""The data uses register: small-number suppression, one row per flow, CSV and HTML, and the command."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from include.demo_history import seed_history
from optout.cli import app
from optout.governance.uses_register import HEADER, suppress, to_csv, to_html, uses
from optout.ledger import Ledger


@pytest.mark.parametrize(
    ("count", "shown"),
    [(0, "0"), (1, "<8"), (7, "<8"), (8, "10"), (12, "10"), (13, "15"), (17, "15"), (18, "20"), (1234, "1,235")],
)
def test_small_numbers_are_suppressed_and_the_rest_rounded_to_5(count: int, shown: str) -> None:
    assert suppress(count) == shown


def test_the_rule_can_be_changed_and_refuses_negative_counts() -> None:
    assert suppress(9, below=10) == "<10" and suppress(23, base=10) == "20" and suppress(23, base=1) == "23"
    with pytest.raises(ValueError):
        suppress(-1)


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    seed_history(url, datetime.now(UTC), days=100, cohort=1000)
    return url


def test_one_row_per_flow_with_every_count_suppressed(url: str) -> None:
    ledger = Ledger(url)
    entries = ledger.entries()
    ledger.dispose()
    rows = uses(entries)
    assert len(rows) == len({(e.disclosure.dag_id, e.disclosure.task_id) for e in entries})
    assert sum(r.disclosures for r in rows) == len(entries)
    table = list(csv.reader(io.StringIO(to_csv(rows))))
    assert table[0][:4] == ["Recipient", "Purpose", "Legal basis", "Period"]
    for row in table[1:]:
        for cell in row[4:]:
            assert cell in ("0", "<8", "not recorded") or int(cell.replace(",", "")) % 5 == 0, row
    exempt = next(r for r in rows if r.purpose == "exempt")
    assert exempt.legal_basis == "court_order"
    assert exempt.cells()[6] == "not recorded"  # an exempt copy is not validated: nobody counted its people
    html = to_html(rows, organisation="Northshire <Trust>", period="2026")
    assert "Northshire &lt;Trust&gt;" in html and "<td>Northshire" not in html


def test_the_command_writes_csv_and_html(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTOUT_STORE_URL", url)
    monkeypatch.setattr("optout.cli.register.declared_or_warn", lambda: [])
    since = f"{datetime.now(UTC) - timedelta(days=100):%Y-%m-%d}"
    for name in ("uses.csv", "uses.html"):
        done = CliRunner().invoke(app, ["register", "--since", since, "--out", str(tmp_path / name)])
        assert done.exit_code == 0, done.output
    assert (tmp_path / "uses.csv").read_text().startswith("Recipient,Purpose")
    assert "Data uses register" in (tmp_path / "uses.html").read_text()
    assert CliRunner().invoke(app, ["register", "--since", since, "--out", str(tmp_path / "x.pdf")]).exit_code != 0


def test_people_included_are_the_largest_disclosure_suppressed_or_not_recorded(url: str) -> None:
    ledger = Ledger(url)
    entries = ledger.entries()
    ledger.dispose()
    counted = [e for e in entries if e.disclosure.people_out is not None]
    flow = (counted[0].disclosure.dag_id, counted[0].disclosure.task_id)
    sent = [e for e in entries if (e.disclosure.dag_id, e.disclosure.task_id) == flow]
    row = uses(sent)[0]
    shown = suppress(max(e.disclosure.people_out or 0 for e in sent))
    assert row.cells()[HEADER.index("People included")] == shown
    table = list(csv.reader(io.StringIO(to_csv([row]))))
    assert table[1][HEADER.index("People included")] == shown
    old = replace(sent[0], disclosure=replace(sent[0].disclosure, people_out=None))  # recorded before the count
    mixed = uses([old, *sent[1:]])[0]
    assert mixed.cells()[HEADER.index("People included")] == "not recorded"
    assert f"<td>{shown}</td>" in to_html([row], organisation="Trust", period="2026").replace(' class="num"', "")
