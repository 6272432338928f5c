"""The Great Expectations proof on a real filtered extract: passes when clean, fails on each planted fault,
and no GX artefact ever holds an NHS number of the test cohort."""

from __future__ import annotations

import csv
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from optout.errors import VerificationFailed
from optout.filter import run_filter
from optout.manifest import read_manifest, sha256_of
from optout.nhs_number import synthetic
from optout.quarantine import ANY_SHARE
from optout.spec import load_spec
from optout.store import Store
from optout.validation import CHECKS, read_validation, require_validated, run_validation, validation_dir

pytestmark = pytest.mark.slow
NOW = datetime.now(UTC)


@dataclasses.dataclass
class Extract:
    spec_path: Path
    out_dir: Path
    store: Store
    numbers: np.ndarray  # everyone's number
    opted_out: np.ndarray
    unchecked_key: str


@pytest.fixture
def extract(tmp_path: Path) -> Extract:
    """20 people: 3 opted out, 2 never checked; person p05 also has one opted-out event (a second number)."""
    numbers = synthetic(21)
    people = [f"p{i:02d}" for i in range(20)]
    cohort = numbers[:18].copy()
    cohort = np.append(cohort, numbers[20])
    opted_out = numbers[[15, 16, 17, 20]]
    cleared = np.setdiff1d(cohort, opted_out)
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "patients.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["nhs_number", "person_id", "name"])
        for person, number in zip(people, numbers[:20], strict=True):
            writer.writerow([f"{number:010d}", person, f"Name {person}"])
    with open(src / "contacts.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["person_id", "phone"])
        for person in [*people, "p99"]:
            writer.writerow([person, "0113 000 0000"])
    events = pa.table(
        {
            "nhs_number": pa.array([*numbers[:20], numbers[20]], pa.int64()),
            "person_id": [*people, "p05"],
            "code": ["X"] * 21,
        }
    )
    pq.write_table(events, src / "events.parquet")
    (src / "spec.yaml").write_text(
        "name: audit\npurpose: research\ntables:\n"
        "  - {name: patients, path: patients.csv, nhs_number: nhs_number, person_key: person_id}\n"
        "  - {name: contacts, path: contacts.csv, person_key: person_id}\n"
        "  - {name: events, path: events.parquet, nhs_number: nhs_number, person_key: person_id}\n"
    )
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    version = store.record_request(np.sort(cohort))
    store.import_reply(version.id, cleared, checked_at=NOW - timedelta(hours=1))
    out_dir = tmp_path / "out"
    run_filter(load_spec(src / "spec.yaml"), out_dir, store.load())
    return Extract(src / "spec.yaml", out_dir, store, numbers, opted_out, "p99")


def validate(ex: Extract, **kwargs: object):  # type: ignore[no-untyped-def]
    manifest = read_manifest(ex.out_dir)
    kwargs.setdefault("current", ex.store.current())
    return run_validation(load_spec(ex.spec_path), ex.out_dir, ex.store.load(manifest.version_id), **kwargs)  # type: ignore[arg-type]


def failed(result) -> set[str]:  # type: ignore[no-untyped-def]
    return {check.name for check in result.checks if not check.ok}


def assert_no_number_leaked(ex: Extract, *folders: Path) -> None:
    """Every file GX or we wrote: suites, results, checkpoint result, Data Docs (HTML, JSON)."""
    plain = {f"{n:010d}" for n in ex.numbers}
    texts = plain | {f"{t[:3]} {t[3:6]} {t[6:]}" for t in plain}
    scanned = 0
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix in {".json", ".html", ".yml", ".yaml", ".txt", ".css", ".js", ""}:
                content = path.read_text(errors="replace")
                assert not [t for t in texts if t in content], f"an NHS number leaked into {path}"
                scanned += 1
    assert scanned > 5


def plant_row(ex: Extract, table: str, row: dict[str, str]) -> None:
    """Append a row to an output and rewrite the manifest to match, as a buggy filter would."""
    manifest = read_manifest(ex.out_dir)
    path = ex.out_dir / manifest.table(table).file
    with open(path, "a", newline="") as handle:
        csv.writer(handle).writerow(row.values())
    tables = tuple(
        dataclasses.replace(t, rows_in=t.rows_in + 1, rows_out=t.rows_out + 1, sha256=sha256_of(path))
        if t.name == table
        else t
        for t in manifest.tables
    )
    dataclasses.replace(manifest, tables=tables).write(ex.out_dir)
    src = load_spec(ex.spec_path).table(table).path
    assert src is not None
    with open(src, "a", newline="") as handle:
        csv.writer(handle).writerow(row.values())


def test_a_correctly_filtered_extract_passes(extract: Extract, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    result = validate(extract, data_docs_dir=docs)
    assert result.ok, result.checks
    assert [c.name for c in result.checks] == list(CHECKS)
    assert result.data_docs_index == docs.resolve() / "index.html" and result.data_docs_index.is_file()
    assert result.result_path.parent == validation_dir(extract.out_dir)
    assert not any(p.name.startswith("result") for p in extract.out_dir.iterdir())
    record = require_validated(extract.out_dir)
    assert record == read_validation(extract.out_dir)
    assert record.version_id == extract.store.current().id  # type: ignore[union-attr]
    assert record.checks == dict.fromkeys(CHECKS, True)
    assert_no_number_leaked(extract, validation_dir(extract.out_dir), docs)


def test_an_opted_out_row_fails_and_blocks_the_export(extract: Extract) -> None:
    plant_row(extract, "patients", {"nhs_number": f"{extract.opted_out[0]:010d}", "person_id": "p00", "name": "x"})
    result = validate(extract)
    assert "no_uncleared_number" in failed(result)
    assert not result.ok
    check = next(c for c in result.checks if c.name == "no_uncleared_number")
    assert check.detail["uncleared_rows"] == 1
    with pytest.raises(VerificationFailed, match="no_uncleared_number"):
        require_validated(extract.out_dir)
    assert_no_number_leaked(extract, validation_dir(extract.out_dir))


def test_an_unchecked_persons_contact_row_fails(extract: Extract) -> None:
    plant_row(extract, "contacts", {"person_id": extract.unchecked_key, "phone": "0113 000 0000"})
    result = validate(extract)
    assert failed(result) == {"no_removed_person"}
    with pytest.raises(VerificationFailed, match="no_removed_person"):
        require_validated(extract.out_dir)


def test_a_removed_persons_row_fails(extract: Extract) -> None:
    # p05 had an opted-out event: every row of p05 must be gone, even under a cleared number.
    plant_row(extract, "contacts", {"person_id": "p05", "phone": "0113 000 0000"})
    assert failed(validate(extract)) == {"no_removed_person"}


def test_an_altered_file_fails(extract: Extract) -> None:
    path = extract.out_dir / "contacts.csv"
    path.write_text(path.read_text().replace("0113", "0114", 1))
    result = validate(extract)
    assert failed(result) == {"manifest_reconciles"}
    with pytest.raises(VerificationFailed):
        require_validated(extract.out_dir)


def test_a_file_altered_after_validation_blocks_the_export(extract: Extract) -> None:
    assert validate(extract).ok
    path = extract.out_dir / "contacts.csv"
    path.write_text(path.read_text() + "p00,0113 000 0000\n")
    with pytest.raises(VerificationFailed, match="changed after validation"):
        require_validated(extract.out_dir)
    (extract.out_dir / "contacts.csv").unlink()
    (extract.out_dir / "extra.csv").write_text("x\n")
    with pytest.raises(VerificationFailed):
        require_validated(extract.out_dir)


def test_a_stale_or_superseded_list_fails(extract: Extract) -> None:
    assert failed(validate(extract, now=NOW + timedelta(days=3))) == {"list_fresh_and_current"}
    newer = extract.store.record_request(np.sort(extract.numbers[:5]))
    extract.store.import_reply(newer.id, extract.numbers[:5], checked_at=NOW, thresholds=ANY_SHARE)
    assert failed(validate(extract)) == {"list_fresh_and_current"}


def test_never_validated_is_refused(extract: Extract) -> None:
    assert read_validation(extract.out_dir) is None
    with pytest.raises(VerificationFailed, match="never validated"):
        require_validated(extract.out_dir)


def test_result_json_holds_no_number(extract: Extract) -> None:
    result = validate(extract)
    data = json.loads(result.result_path.read_text())
    assert set(data) == {
        "ok",
        "manifest_sha256",
        "validated_at",
        "version_id",
        "data_docs_index",
        "checks",
        "details",
        "people_out",
    }
    assert (validation_dir(extract.out_dir) / "checkpoint_result.json").is_file()


def test_the_leak_scan_would_see_a_number(extract: Extract, tmp_path: Path) -> None:
    folder = tmp_path / "control"
    folder.mkdir()
    for n in range(6):
        (folder / f"{n}.html").write_text("<td>nothing</td>")
    (folder / "leak.json").write_text(json.dumps({"value": f"{extract.opted_out[0]:010d}"}))
    with pytest.raises(AssertionError, match="leaked"):
        assert_no_number_leaked(extract, folder)
