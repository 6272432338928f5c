"""The extract spec: validated on load, every error naming the spec file and the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from optout.errors import InputError
from optout.homes.files.formats import Format
from optout.purpose import LegalBasis, Purpose
from optout.spec import ExtractSpec, TableSpec, load_spec

GOOD = """\
name: cohort study
purpose: research
tables:
  - name: patients
    path: data/patients.csv
    nhs_number: nhs_number
    person_key: pid
  - name: events
    path: /abs/events.parquet
    person_key: pid
    output: linked/events.parquet
"""


def _load(tmp_path: Path, text: str) -> ExtractSpec:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return load_spec(path)


def _error(tmp_path: Path, text: str) -> InputError:
    with pytest.raises(InputError) as caught:
        _load(tmp_path, text)
    assert caught.value.path == str(tmp_path / "spec.yaml")
    return caught.value


def test_good_spec(tmp_path: Path) -> None:
    spec = _load(tmp_path, GOOD)
    assert (spec.name, spec.purpose, spec.filtered, spec.keyed) == ("cohort study", Purpose.RESEARCH, True, True)
    patients, events = spec.tables
    assert patients.path == tmp_path / "data" / "patients.csv"  # relative to the spec's folder
    assert (patients.format, patients.output_name) == (Format.CSV, "patients.csv")
    assert events.path == Path("/abs/events.parquet")
    assert (events.nhs_number, events.output_name) == (None, "linked/events.parquet")


def test_exempt_needs_basis_and_reference(tmp_path: Path) -> None:
    base = GOOD.replace("purpose: research", "purpose: exempt")
    assert _error(tmp_path, base).field == "legal_basis"
    assert _error(tmp_path, base + "legal_basis: court_order\n").field == "legal_reference"
    spec = _load(tmp_path, base + "legal_basis: court_order\nlegal_reference: CO-2025-7\n")
    assert (spec.legal_basis, spec.filtered) == (LegalBasis.COURT_ORDER, False)
    assert _error(tmp_path, GOOD + "legal_basis: consent\n").field == "legal_basis"  # research is not exempt


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (GOOD + "owner: me\n", "owner"),
        (
            GOOD.replace("    person_key: pid\n    output", "    colour: red\n    person_key: pid\n    output"),
            "tables[1].colour",
        ),
        (GOOD.replace("    nhs_number: nhs_number\n    person_key: pid\n", ""), "tables[0]"),
        (GOOD.replace("name: events", "name: patients"), "tables[1].name"),
        (GOOD.replace("output: linked/events.parquet", "output: ../events.parquet"), "tables[1].output"),
        (GOOD.replace("output: linked/events.parquet", "output: /tmp/events.parquet"), "tables[1].output"),
        (GOOD.replace("output: linked/events.parquet", "output: events.csv"), "tables[1].output"),
        (GOOD.replace("data/patients.csv", "data/patients.xlsx"), "tables[0].path"),
        (GOOD.replace("nhs_number: nhs_number", "nhs_number: ''"), "tables[0].nhs_number"),
        (GOOD.replace("purpose: research", "purpose: curiosity"), "purpose"),
        ("name: x\npurpose: research\ntables: []\n", "tables"),
        (GOOD.replace("name: cohort study\n", ""), "name"),
    ],
)
def test_refusals_name_the_key(tmp_path: Path, text: str, field: str) -> None:
    assert _error(tmp_path, text).field == field


def test_duplicate_outputs_refused(tmp_path: Path) -> None:
    text = GOOD.replace("path: /abs/events.parquet", "path: /abs/other/patients.csv").replace(
        "output: linked/events.parquet", "nhs_number: n"
    )
    assert _error(tmp_path, text).field == "tables[1].output"


def test_alias_bombs_and_bad_yaml_refused(tmp_path: Path) -> None:
    bomb = 'a: &a ["x","x"]\nb: &b [*a,*a]\nc: [*b,*b]\n'
    assert "anchors" in str(_error(tmp_path, bomb))
    broken = _error(tmp_path, "name: [unclosed\n")
    assert broken.line is not None
    assert "larger" in str(_error(tmp_path, "#" * (2 << 20)))
    with pytest.raises(InputError):
        load_spec(tmp_path / "missing.yaml")


def test_built_in_code() -> None:
    spec = ExtractSpec("frames", Purpose.PLANNING, (TableSpec("t", nhs_number="nhs"),))
    assert spec.table("t").output_name == "t.parquet"
    with pytest.raises(InputError) as caught:
        ExtractSpec("frames", Purpose.PLANNING, (TableSpec("t"),))
    assert caught.value.field == "tables[0]"


def test_loading_a_spec_imports_nothing_heavy(tmp_path: Path) -> None:
    """Reading a spec (the CLI's first step, and the policy's) loads no Arrow, NumPy, Thrift or pandas."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: light\npurpose: research\ntables:\n  - {name: t, path: t.parquet, nhs_number: nhs,"
        " pseudonymised: {scheme: hmac-sha256, key_env: OPTOUT_KEY}}\n"
    )
    probe = (
        "import json, sys\nfrom optout.spec import load_spec\nload_spec(sys.argv[1])\n"
        "print(json.dumps([m for m in ('pyarrow', 'numpy', 'thrift', 'pandas') if m in sys.modules]))"
    )
    result = subprocess.run([sys.executable, "-c", probe, str(spec)], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []
