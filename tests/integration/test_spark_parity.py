"""Pseudonymised tables and consent on a real Spark Connect server, against the file engine.

Differential, both join paths: a pseudonymised extract (hashed ids in either case, padded, missing,
malformed, of opted-out and never-checked people, with and without a person key, beside a table of plain
numbers sharing the keys), a consented study (consented people opted out, cleared and never checked,
over a keyed and a keyless table) and an extract under no_nhs_number_disproportionate (rows without a
usable number, keyed, keyless and in a table of keys only) go through the file engine and the Spark
engine; the manifests' counts and exemption records must be equal, no output may hold an uncleared
number or id, and the proof in Spark must pass (or, for the exemption, fail exactly where the file
proof fails). A wrong key stops the Spark run before anything is written, never showing the key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from optout.exemptions import effective
from optout.filter import run_filter
from optout.pseudonym import Key, PseudonymKeyError, hash_numbers, hex_digests
from optout.quarantine import ANY_SHARE
from optout.spec import load_spec
from optout.store import Store
from tests.integration.test_spark_engine import _assert_no_leak, _counts, _spark_spec, both_engines, run_classic
from tests.integration.test_spark_engine import join as join  # the fixture: both join paths, forced
from tests.integration.test_spark_proof import _store, _validate
from tests.unit.filter_data import N, check_result, write_extract
from tests.unit.test_exemptions import CONSENT, NO_NUMBER, ROWS, write

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KEY_ENV = "OPTOUT_TEST_SPARK_PSEUDO_KEY"
SECRET = "spark-pseudonym-test-key-do-not-use"
PSEUDO_TABLES = f"""\
  - name: visits
    path: visits.csv
    nhs_number: token
    person_key: pid
    pseudonymised: {{scheme: hmac-sha256, key_env: {KEY_ENV}}}
  - name: scans
    path: scans.parquet
    nhs_number: token
    pseudonymised: {{key_env: {KEY_ENV}}}
"""


def _pseudonymised(folder: Path) -> Path:
    """The shared extract (patients, events, notes by pid) with two tables of hashed ids beside it."""
    spec = write_extract(folder)
    spec.write_text(spec.read_text() + PSEUDO_TABLES)
    hexes = hex_digests(hash_numbers(np.asarray(N, dtype=np.int64), Key(SECRET))).to_pylist()
    visits = [  # pid, token: N[0..5] cleared, N[6], N[7] opted out, N[8], N[9] never checked
        ("p1", hexes[0]),
        ("p2", hexes[1].upper()),
        ("p3", hexes[6]),
        ("p4", hexes[8]),
        ("p5", None),
        ("p6", "not-a-hash"),
        ("p7", f" {hexes[2]} "),  # cleared, but p7's patient row was never checked: removed as a person
        ("p9", hexes[3]),
        ("", hexes[7]),  # no key: the id itself is the person
        ("p11", "NULL"),
        ("p12", hexes[4]),
    ]
    pacsv.write_csv(pa.table({"pid": [v[0] for v in visits], "token": [v[1] for v in visits]}), folder / "visits.csv")
    scans = [hexes[5], hexes[7], hexes[9], "", hexes[5].upper(), hexes[1][:63]]  # hexes[7]: the same person
    pq.write_table(pa.table({"token": scans, "size": list(range(len(scans)))}), folder / "scans.parquet")
    return spec


def test_pseudonymised_tables_match_the_file_engine(
    spark_connect_url: str, join: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    store = _store(tmp_path)
    spark_spec, manifest = both_engines(_pseudonymised(tmp_path / "in"), tmp_path, spark_connect_url, store.load())
    assert manifest.table("visits").removed == {
        "opted_out": 2,
        "unchecked": 1,
        "bad_check_digit": 0,
        "malformed": 1,
        "missing": 2,
        "person_removed": 1,
    }
    assert manifest.table("scans").rows_out == 2 and manifest.people_removed["opted_out"] >= 2
    _assert_no_leak(tmp_path / "spark", spark_spec, store.load())
    assert SECRET not in (tmp_path / "spark" / "manifest.json").read_text()
    if join == "broadcast":  # the proof, in Spark, hashes nothing again: the staged hashes are reused
        assert _validate(spark_spec, tmp_path / "spark", store).ok


def test_classic_pyspark_filters_pseudonymised_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same SQL in a local classic session: the hashes staged and joined, people told apart alike."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    spec_path = _pseudonymised(tmp_path / "in")
    files = run_filter(load_spec(spec_path), tmp_path / "files", check_result())
    manifest, _ = run_classic(_spark_spec(spec_path), tmp_path / "spark", tmp_path / "home")
    assert _counts(manifest) == _counts(files) and manifest.table("scans").rows_out == 2


def test_a_wrong_key_stops_the_spark_run_before_anything_is_written(
    spark_connect_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spark_spec(_pseudonymised(tmp_path / "in"), connection=spark_connect_url)
    monkeypatch.setenv(KEY_ENV, "not the data controller's key")
    with pytest.raises(PseudonymKeyError, match=KEY_ENV) as raised:
        run_filter(load_spec(spec), tmp_path / "out", _store(tmp_path).load())
    assert "not the data controller's key" not in str(raised.value)
    assert not (tmp_path / "out").exists()


def _small_store(tmp_path: Path) -> Store:
    """test_exemptions' list: a cohort of four people, two of them opted out."""
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    version = store.record_request(np.sort(N[:4]))
    store.import_reply(
        version.id, np.sort(N[2:4]), checked_at=datetime.now(UTC) - timedelta(hours=1), thresholds=ANY_SHARE
    )
    return store


def _exempt_run(spec_text: str, kept_as: str, tmp_path: Path, url: str) -> tuple[Path, Store]:
    """test_exemptions' episodes and a keyless table of the same numbers, through both engines against its
    small list: the exemption kept rows of more than one person, alike, and no output holds a number that
    is not cleared (the consented people being cleared); returns the Spark spec and the store."""
    spec = write(tmp_path / "in", spec_text + "  - name: letters\n    path: letters.parquet\n    nhs_number: nhs\n")
    letters = [int(number) if number and len(number) == 10 else None for _, number, _ in ROWS]
    pq.write_table(
        pa.table({"nhs": pa.array(letters, pa.int64()), "n": list(range(len(ROWS)))}), spec.parent / "letters.parquet"
    )
    store = _small_store(tmp_path)
    spark_spec, manifest = both_engines(spec, tmp_path, url, store.load())
    kept = manifest.kept[kept_as]
    assert kept["rows"] > kept["people"] > 0
    _assert_no_leak(tmp_path / "spark", spark_spec, effective(load_spec(spark_spec), store.load()))
    return spark_spec, store


def test_consent_keeps_the_same_people_as_the_file_engine(spark_connect_url: str, join: str, tmp_path: Path) -> None:
    """The consented people (opted out, cleared, never checked) are kept in a keyed and a keyless table;
    the rows and people kept by consent are counted in Spark as the file engine counts them."""
    spark_spec, store = _exempt_run(CONSENT, "kept_by_consent", tmp_path, spark_connect_url)
    if join == "broadcast":
        assert _validate(spark_spec, tmp_path / "spark", store).ok


def test_rows_without_a_number_pass_as_in_the_file_engine(spark_connect_url: str, join: str, tmp_path: Path) -> None:
    """Rows with no usable number pass (keyed, keyless, and in a table of keys only: no key, or a key never
    seen beside a number); every row with a number is filtered; what passed is counted alike. The file
    proof counts a key-only table's unseen keys as removed people whatever the exemption: the Spark proof
    must fail exactly as it does."""
    notes = ["P1", "P2", "P4", "P7", "P99", "P99", "", "P8"]
    (tmp_path / "in").mkdir()
    pacsv.write_csv(
        pa.table({"person_id": notes, "text": [f"note {i}" for i in range(len(notes))]}), tmp_path / "in" / "notes.csv"
    )
    spec_text = NO_NUMBER + "  - name: notes\n    path: notes.csv\n    person_key: person_id\n"
    spark_spec, store = _exempt_run(spec_text, "kept_without_number", tmp_path, spark_connect_url)
    if join == "broadcast":
        by_files = _validate(tmp_path / "in" / "spec.yaml", tmp_path / "files", store)
        in_spark = _validate(spark_spec, tmp_path / "spark", store)
        assert [(c.name, c.ok) for c in in_spark.checks] == [(c.name, c.ok) for c in by_files.checks]
