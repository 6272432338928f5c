"""Exemptions person by person: consent keeps the people in a consented list whatever their opt-out, and
no_nhs_number_disproportionate passes only the rows without a usable number. Opted-out people on both sides."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optout.errors import InputError
from optout.filter import run_filter
from optout.gate import check_before_send
from optout.governance.approvals import ApprovalRegister
from optout.nhs_number import synthetic
from optout.purpose import Purpose
from optout.quarantine import ANY_SHARE
from optout.spec import load_spec
from optout.store import CheckResult, Store
from optout.validation import run_validation

N = synthetic(8)
OPTED_OUT_CONSENTED, OPTED_OUT, CLEARED_CONSENTED, CLEARED, UNCHECKED_CONSENTED, UNCHECKED = (str(n) for n in N[:6])
BAD_DIGIT = str(N[6] + 1 if N[6] % 10 != 9 else N[6] - 1)
ROWS = [  # person, number, value
    ("P1", OPTED_OUT_CONSENTED, "a"),
    ("P1", OPTED_OUT_CONSENTED, "b"),
    ("P2", OPTED_OUT, "c"),
    ("P2", "", "d"),  # P2's row without a number goes with P2
    ("P3", CLEARED_CONSENTED, "e"),
    ("P4", CLEARED, "f"),
    ("P5", UNCHECKED_CONSENTED, "g"),
    ("P6", UNCHECKED, "h"),
    ("P7", "", "i"),  # no number at all
    ("P8", "12345", "j"),  # malformed
    ("P9", BAD_DIGIT, "k"),  # a bad check digit
]


@pytest.fixture
def store() -> tuple[Store, CheckResult]:
    """A list whose cohort is the first four people; two of them opted out."""
    store = Store()
    cohort = np.sort(N[:4])
    version = store.record_request(cohort)
    store.import_reply(version.id, np.sort(N[2:4]), thresholds=ANY_SHARE)
    return store, store.load(version.id)


def write(folder: Path, spec: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "episodes.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["person_id", "nhs_number", "value"])
        writer.writerows(ROWS)
    (folder / "consented.csv").write_text(
        f"nhs,name\n{OPTED_OUT_CONSENTED},x\n{CLEARED_CONSENTED},y\n{UNCHECKED_CONSENTED},z\nnot a number,w\n",
        encoding="utf-8",
    )
    (folder / "spec.yaml").write_text(spec, encoding="utf-8")
    return folder / "spec.yaml"


TABLES = """tables:
  - name: episodes
    path: episodes.csv
    nhs_number: nhs_number
    person_key: person_id
"""
CONSENT = "name: consent_study\npurpose: research\nconsented: {path: consented.csv, nhs_number: nhs}\n" + TABLES
NO_NUMBER = (
    "name: no_number\npurpose: exempt\nlegal_basis: no_nhs_number_disproportionate\nlegal_reference: NN-1\n" + TABLES
)


def approve_no_number() -> None:
    register = ApprovalRegister()
    today = datetime.now(UTC).date()
    register.add("NN-1", basis="no_nhs_number_disproportionate", approved_by="CG", expires=today, recorded_by="IG")
    register.dispose()


def values(folder: Path) -> set[str]:
    with (folder / "episodes.csv").open(encoding="utf-8") as handle:
        return {row["value"] for row in csv.DictReader(handle)}


def test_consent_keeps_the_consented_and_filters_everyone_else(
    store: tuple[Store, CheckResult], tmp_path: Path
) -> None:
    spec = load_spec(write(tmp_path / "in", CONSENT))
    manifest = run_filter(spec, tmp_path / "out", store[1])
    # Kept: the consented (opted out, cleared, unchecked) and the cleared; removed: the opted-out and
    # unchecked people who did not consent, and rows without a valid number.
    assert values(tmp_path / "out") == {"a", "b", "e", "f", "g"}
    assert manifest.kept == {"kept_by_consent": {"rows": 3, "people": 2}}  # P1's two rows and P5's
    assert manifest.people_removed["opted_out"] == 1 and manifest.people_removed["unchecked"] == 1
    assert "kept by consent: 3 rows, 2 people" in manifest.summary_lines()
    assert run_validation(spec, tmp_path / "out", store[1], current=store[0].current()).ok
    frames = run_filter(
        spec, tmp_path / "frames", store[1], frames={"episodes": pd.read_csv(tmp_path / "in" / "episodes.csv")}
    )
    assert frames.kept == manifest.kept and frames.rows_out == manifest.rows_out


def test_no_number_passes_only_the_rows_without_a_usable_number(
    store: tuple[Store, CheckResult], tmp_path: Path
) -> None:
    spec = load_spec(write(tmp_path / "in", NO_NUMBER))
    assert spec.filtered
    manifest = run_filter(spec, tmp_path / "out", store[1])
    # Every row with a valid number is filtered as for research (the consent list means nothing here);
    # P2's row without a number goes with P2, who opted out.
    assert values(tmp_path / "out") == {"e", "f", "i", "j", "k"}
    assert manifest.kept == {"kept_without_number": {"rows": 3, "people": 3}}
    assert manifest.filtered and manifest.version_id == store[1].info.id
    assert run_validation(spec, tmp_path / "out", store[1], current=store[0].current()).ok
    approve_no_number()
    permit = check_before_send(tmp_path / "out", Purpose.EXEMPT, store=store[0])
    assert permit.validation is not None and permit.max_age is not None  # proved and fresh, like research


def test_no_number_refuses_to_send_without_a_validation(store: tuple[Store, CheckResult], tmp_path: Path) -> None:
    from optout.errors import VerificationFailed

    spec = load_spec(write(tmp_path / "in", NO_NUMBER))
    run_filter(spec, tmp_path / "out", store[1])
    approve_no_number()
    with pytest.raises(VerificationFailed, match="was never validated"):
        check_before_send(tmp_path / "out", Purpose.EXEMPT, store=store[0])


def test_consent_in_a_database_keeps_the_same_people(
    store: tuple[Store, CheckResult], tmp_path: Path, store_url: str
) -> None:
    """The SQL engine keeps the consented people too (staged with the cleared list), and counts them; the
    consented list may be a table in the same database."""
    import sqlalchemy as sa

    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE episodes (person_id TEXT, nhs_number TEXT, value TEXT)"))
        conn.execute(sa.text("CREATE TABLE consented (nhs TEXT)"))
        rows = [{"p": p, "n": n or None, "v": v} for p, n, v in ROWS]
        conn.execute(sa.text("INSERT INTO episodes VALUES (:p, :n, :v)"), rows)
        consented = [{"n": n} for n in (OPTED_OUT_CONSENTED, CLEARED_CONSENTED, UNCHECKED_CONSENTED)]
        conn.execute(sa.text("INSERT INTO consented VALUES (:n)"), consented)
    in_database = (
        f"name: consent_study\npurpose: research\nconsented: {{table: consented, connection: '{store_url}', "
        f"nhs_number: nhs}}\ntables:\n  - name: episodes\n    table: episodes\n    connection: '{store_url}'\n"
        "    nhs_number: nhs_number\n    person_key: person_id\n"
    )
    spec = load_spec(write(tmp_path / "in", in_database))
    manifest = run_filter(spec, tmp_path / "out", store[1])
    with engine.connect() as conn:
        kept = set(conn.execute(sa.text("SELECT value FROM episodes_optout")).scalars())
    engine.dispose()
    assert kept == {"a", "b", "e", "f", "g"}
    assert manifest.kept == {"kept_by_consent": {"rows": 3, "people": 2}}
    assert run_validation(spec, tmp_path / "out", store[1], current=store[0].current()).ok


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "name: x\npurpose: exempt\nlegal_basis: consent\nlegal_reference: C-1\n" + TABLES,
            "consent is given person by person, not for a whole extract",
        ),
        (
            "name: x\npurpose: direct_care\nconsented: {path: consented.csv, nhs_number: nhs}\n" + TABLES,
            "purpose 'direct_care' is not filtered",
        ),
        (
            "name: x\npurpose: research\nconsented: {path: consented.csv, nhs_number: nhs}\n"
            + TABLES
            + "    pseudonymised: {key_env: SOME_KEY}\n",
            "not to pseudonymised tables",
        ),
        (
            NO_NUMBER.replace("tables:", "engine: spark\ntables:") + "    pseudonymised: {key_env: SOME_KEY}\n",
            "by the Spark engine to tables that are not pseudonymised",
        ),
        ("name: x\npurpose: research\nconsented: {table: people, nhs_number: nhs}\n" + TABLES, "needs a connection"),
        (
            "name: x\npurpose: research\nconsented: {path: a.csv, table: b, nhs_number: nhs}\n" + TABLES,
            "give exactly one of path and table",
        ),
    ],
)
def test_whole_extract_consent_and_unsupported_uses_are_refused(tmp_path: Path, spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_spec(write(tmp_path, spec))


def test_a_consented_list_without_a_valid_number_is_refused(store: tuple[Store, CheckResult], tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path / "in", CONSENT.replace("nhs_number: nhs}", "nhs_number: name}")))
    with pytest.raises(InputError, match="no valid NHS number in column 'name'"):
        run_filter(spec, tmp_path / "out", store[1])
