"""The one proof (``optout.proof``), without GX: clean output passes; any planted or altered row, a
changed file or the wrong version fails it, with counts only. (Was ``test_verify.py``, when the library
had a second copy of the proof.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from filter_data import N, check_result, write_extract

from optout.errors import InputError
from optout.filter import run_filter
from optout.homes import home_for
from optout.manifest import read_manifest
from optout.proof import Proof, prove
from optout.spec import ExtractSpec, load_spec
from optout.validation import run_validation

NOW = datetime.now(UTC)


@pytest.fixture
def filtered(tmp_path: Path) -> tuple[ExtractSpec, Path]:
    spec = load_spec(write_extract(tmp_path / "in"))
    run_filter(spec, tmp_path / "out", check_result())
    return spec, tmp_path / "out"


def _prove(spec: ExtractSpec, out: Path, version: int = 7) -> Proof:
    used = check_result(version)
    return prove(home_for(spec), out, read_manifest(out), used, current=used.info, now=NOW, max_age=timedelta(days=365))


def _faults(proof: Proof) -> dict[str, dict[str, Any]]:
    """Each table's counts that are not clean (flags that are False, counts that are not 0); freshness
    against the clock is test_validation's (these check results were checked long ago)."""
    clean: dict[str, Any] = {"hash_ok": True, "version_matches": True}
    skip = ("table", "rows", "list_fresh_at_filter", "list_is_current")
    faults = {}
    for row in proof.rows:
        bad = {key: value for key, value in row.items() if key not in skip and value != clean.get(key, 0)}
        if bad:
            faults[row["table"]] = bad
    return faults


def test_clean_output_proves(filtered: tuple[ExtractSpec, Path]) -> None:
    spec, out = filtered
    proof = _prove(spec, out)
    assert _faults(proof) == {} and proof.found_at == [] and proof.tables_scanned == len(spec.tables)
    assert [row["rows"] for row in proof.rows] == [t.rows_out for t in read_manifest(out).tables]
    assert not [row for row in proof.rows if any(str(n) in str(row) for n in N)]


def test_planted_opted_out_row_fails(filtered: tuple[ExtractSpec, Path]) -> None:
    spec, out = filtered
    path = out / "events.parquet"
    table = pq.read_table(path)
    planted = pa.table({"pid": ["p1"], "nhs": [int(N[6])], "when": table["when"][:1], "score": table["score"][:1]})
    pq.write_table(pa.concat_tables([table, planted.cast(table.schema)]), path)
    proof = _prove(spec, out)
    # p1 itself is cleared; the scan finds the number too, and says where (never which)
    assert _faults(proof) == {
        "events": {"hash_ok": False, "rows_mismatch": 1, "uncleared_number_rows": 1, "leaked_values": 1}
    }
    assert proof.found_at == ["events.nhs: 1"]


def test_planted_row_of_removed_person_fails(filtered: tuple[ExtractSpec, Path]) -> None:
    spec, out = filtered
    notes = out / "notes.csv"
    notes.write_text(notes.read_text() + '"p8","planted"\n')
    assert _faults(_prove(spec, out)) == {"notes": {"hash_ok": False, "rows_mismatch": 1, "removed_person_rows": 1}}


def test_altered_file_and_wrong_version_fail(filtered: tuple[ExtractSpec, Path]) -> None:
    spec, out = filtered
    (out / "patients.csv").write_text((out / "patients.csv").read_text().replace("fine", "FINE"))
    assert _faults(_prove(spec, out)) == {"patients": {"hash_ok": False}}
    wrong = _faults(_prove(spec, out, version=8))
    assert all(row["version_matches"] is False for row in wrong.values()) and len(wrong) == len(spec.tables)


def test_missing_manifest_is_refused(tmp_path: Path) -> None:
    spec = load_spec(write_extract(tmp_path / "in"))
    with pytest.raises(InputError):
        run_validation(spec, tmp_path / "nothing", check_result(), current=check_result().info, now=NOW)


def test_people_are_counted_by_key_across_tables(filtered: tuple[ExtractSpec, Path]) -> None:
    # Kept: p1, p2 and p9 (p9 twice in patients, again in events and notes); notes carries keys alone.
    spec, out = filtered
    assert _prove(spec, out).people == 3


KEYLESS = """\
name: keyless extract
purpose: research
tables:
  - name: patients
    path: patients.csv
    nhs_number: nhs_number
  - name: events
    path: events.parquet
    nhs_number: nhs
"""


def test_people_without_keys_are_counted_by_number(tmp_path: Path) -> None:
    # Kept numbers: N[0] (spaced text, and int64 in events), N[1] (dashed), N[2], N[3] (twice, and in events).
    spec = load_spec(write_extract(tmp_path / "in", KEYLESS))
    run_filter(spec, tmp_path / "out", check_result())
    proof = _prove(spec, tmp_path / "out")
    assert _faults(proof) == {} and proof.people == 4


def test_uncleared_count_from_the_scans_reading_is_the_clearance_codes(tmp_path: Path) -> None:
    """A plain text number column is normalised once, by the leak scan: the uncleared rows counted from
    its reading of whole cells are those the clearance codes give, plain or as a dictionary; a column
    the scan had to fold (not ASCII) is marked, so the proof reads it through the codes instead."""
    import numpy as np

    from optout.clearance import KEEP
    from optout.leak_scan import LeakScan
    from optout.proof_people import People

    spec = load_spec(write_extract(tmp_path / "in"))
    used = check_result()
    people, scan = People(spec, used, None), LeakScan(used.cleared_set)
    table = next(t for t in spec.tables if t.nhs_number)
    n = [str(int(number)) for number in N]
    messy = [n[0], f" {n[1][:3]} {n[1][3:6]} {n[1][6:]} ", f"{n[6]}.0", f"{n[2][:3]}-{n[2][3:6]}-{n[2][6:]}", n[8]]
    values = pa.array([*messy, "x", None, "", "12", n[6][:9] + "0", f"note {n[0]}"] * 3)
    expected = int(np.count_nonzero(people.codes(table, values) != KEEP))
    for column in (values, values.dictionary_encode()):
        cells = scan.batch("t", pa.record_batch([column], names=["n"]), whole="n")
        assert cells is not None and not cells.folded
        assert people.uncleared_of(len(column), cells) == expected > 0
    full_width = "".join(chr(ord(digit) + 0xFEE0) for digit in n[0])
    folded = scan.batch("t", pa.record_batch([pa.array([full_width])], names=["n"]), whole="n")
    assert folded is not None and folded.folded
