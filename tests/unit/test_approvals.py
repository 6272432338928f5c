"""Approvals governance staff record: append-only in the store, each change in the ledger, checked by the gate."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from typer.testing import CliRunner

from optout.cli import app, main
from optout.errors import InputError
from optout.governance.approvals import (
    EXPIRED,
    KIND,
    REVOKED,
    VALID,
    ApprovalRefused,
    ApprovalRegister,
    read_approvals,
    require_approval,
)
from optout.ledger import Ledger

TODAY = datetime.now(UTC).date()


def add(register: ApprovalRegister, ref: str, basis: str = "court_order", days: int = 30) -> None:
    register.add(
        ref, basis=basis, approved_by="Caldicott Guardian", expires=TODAY + timedelta(days=days), recorded_by="IG"
    )


def test_records_are_kept_and_the_newest_wins(store_url: str) -> None:
    register = ApprovalRegister(store_url)
    add(register, "HC-1")
    add(register, "CAG 21/CAG/0001", basis="cag_optout_disapplied", days=400)
    register.revoke("HC-1", by="Data Protection Officer")
    add(register, "HC-2", days=0)
    register.dispose()
    found = {a.reference: a for a in read_approvals(store_url)}
    assert found["HC-1"].state() == REVOKED and found["HC-1"].recorded_by == "Data Protection Officer"
    assert found["CAG 21/CAG/0001"].state() == VALID
    assert found["HC-2"].state() == VALID and found["HC-2"].state(TODAY + timedelta(days=1)) == EXPIRED
    ledger = Ledger(store_url)
    events = ledger.events(kind=KIND)
    assert [(e.event.subject, e.event.detail["action"]) for e in events] == [
        ("HC-1", "added"),
        ("CAG 21/CAG/0001", "added"),
        ("HC-1", "revoked"),
        ("HC-2", "added"),
    ]
    assert ledger.verify()[0] and ledger.entries() == []  # events, not disclosures
    ledger.dispose()


def test_the_gate_rule(store_url: str) -> None:
    register = ApprovalRegister(store_url)
    add(register, "HC-1")
    add(register, "HC-2")
    register.revoke("HC-2", by="DPO")
    register.dispose()
    assert require_approval("HC-1", "court_order", store_url).reference == "HC-1"
    with pytest.raises(ApprovalRefused, match="have not recorded"):
        require_approval("HC-9", "court_order", store_url)
    with pytest.raises(ApprovalRefused, match="was revoked by DPO"):
        require_approval("HC-2", "court_order", store_url)
    with pytest.raises(ApprovalRefused, match="expired on"):
        require_approval("HC-1", "court_order", store_url, today=TODAY + timedelta(days=31))
    with pytest.raises(ApprovalRefused, match="recorded for legal basis 'court_order', but the spec claims 'ons'"):
        require_approval("HC-1", "ons", store_url)


def test_a_note_with_an_nhs_number_is_refused() -> None:
    register = ApprovalRegister()
    with pytest.raises(InputError, match="looks like it holds an NHS number"):
        register.add("HC-1", basis="ons", approved_by="CG", expires=TODAY, note="943 476 5919", recorded_by="IG")
    register.dispose()
    assert read_approvals() == []


@pytest.mark.parametrize(
    ("ref", "basis", "expires", "field"),
    [
        (" ", "court_order", TODAY, "REF"),
        ("HC-1", "s251", TODAY, "--basis"),
        ("HC-1", "court_order", TODAY - timedelta(days=1), "--expires"),
        ("943 476 5919", "court_order", TODAY, "kind"),  # the ledger refuses anything like an NHS number
    ],
)
def test_bad_records_are_refused(tmp_path: object, ref: str, basis: str, expires: date, field: str) -> None:
    register = ApprovalRegister()
    with pytest.raises(InputError):
        register.add(ref, basis=basis, approved_by="CG", expires=expires, recorded_by="IG")
    with pytest.raises(InputError, match="no approval"):
        register.revoke("nothing", by="IG")
    register.dispose()
    assert read_approvals() == []


def test_the_cli_adds_lists_and_revokes() -> None:
    runner = CliRunner()
    later = (TODAY + timedelta(days=10)).isoformat()
    added = runner.invoke(
        app,
        ["approvals", "add", "HC-7", "--basis", "court_order", "--approved-by", "CG", "--expires", later,
         "--note", "order of 3 May", "--by", "IG officer"],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    (row,) = json.loads(runner.invoke(app, ["approvals", "list", "--json"]).output)
    assert (row["reference"], row["state"], row["note"], row["recorded_by"]) == (
        "HC-7",
        VALID,
        "order of 3 May",
        "IG officer",
    )
    assert runner.invoke(app, ["approvals", "revoke", "HC-7", "--by", "DPO"]).exit_code == 0
    assert "HC-7: REVOKED" in runner.invoke(app, ["approvals", "list"]).output
    assert main(["approvals", "add", "X-1", "--basis", "court_order", "--approved-by", "CG", "--expires", "3/5"]) == 2
