"""Filtering: the person-key cascade, both engines, round trips, atomic output and the manifest."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from filter_data import EVENTS, NOTES, PATIENTS, SPEC, N, check_result, write_extract

from optout.errors import InputError, NoVersionError
from optout.filter import run_filter
from optout.homes.files.read import read_batches
from optout.homes.frames import filter_frames
from optout.manifest import Manifest, read_manifest
from optout.spec import TableSpec, load_spec


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    return write_extract(tmp_path / "in")


def _frames(folder: Path) -> dict[str, pd.DataFrame]:
    text = {"dtype": str, "keep_default_na": False}
    return {
        "patients": pd.read_csv(folder / "patients.csv", **text),
        "events": pd.read_parquet(folder / "events.parquet"),
        "notes": pd.read_csv(folder / "notes.csv", **text),
    }


def _counts(manifest: Manifest) -> tuple[object, ...]:
    return tuple(replace(table, sha256=None) for table in manifest.tables), manifest.people_removed


def test_cascade_removes_every_row_of_uncleared_people(spec_path: Path, tmp_path: Path) -> None:
    manifest = run_filter(load_spec(spec_path), tmp_path / "out", check_result())
    patients = pa.csv.read_csv(tmp_path / "out" / "patients.csv").column("pid").to_pylist()
    events = pq.read_table(tmp_path / "out" / "events.parquet").column("pid").to_pylist()
    notes = pa.csv.read_csv(tmp_path / "out" / "notes.csv").column("pid").to_pylist()
    assert patients == ["p1", "p2", "p9", "p9"]  # duplicated person rows both kept
    assert events == ["p1", "p9"]
    assert notes == ["p1", "p9"]  # key-only table: p3 and p8 removed, p99 never seen, blank key
    assert manifest.table("patients").removed == {
        "opted_out": 2,
        "unchecked": 1,
        "bad_check_digit": 1,
        "malformed": 1,
        "missing": 1,
        "person_removed": 1,
    }
    assert manifest.table("events").removed["person_removed"] == 1  # p8's cleared row
    assert manifest.table("notes").removed == {
        **dict.fromkeys(manifest.people_removed, 0),
        "unchecked": 1,
        "missing": 1,
        "person_removed": 2,
    }
    assert manifest.people_removed == {
        "opted_out": 2,  # p3, p8
        "unchecked": 2,  # p7, p99
        "bad_check_digit": 1,
        "malformed": 1,
        "missing": 2,  # p4, p10
        "person_removed": 0,
    }
    assert (manifest.version_id, manifest.filtered, manifest.engine) == (7, True, "arrow_files")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "events.parquet",
        "manifest.json",
        "notes.csv",
        "patients.csv",
    ]


def test_files_and_frames_engines_agree(spec_path: Path, tmp_path: Path) -> None:
    spec = load_spec(spec_path)
    from_files = run_filter(spec, tmp_path / "files", check_result())
    kept, from_frames = filter_frames(spec, _frames(spec_path.parent), check_result())
    written = run_filter(spec, tmp_path / "frames", check_result(), frames=_frames(spec_path.parent))
    assert _counts(from_files) == _counts(from_frames) == _counts(written)
    assert (from_frames.engine, written.engine) == ("frames", "frames")
    assert kept["patients"]["pid"].tolist() == ["p1", "p2", "p9", "p9"]
    assert kept["events"].dtypes.equals(_frames(spec_path.parent)["events"].dtypes)


def test_csv_and_parquet_round_trip_with_types(spec_path: Path, tmp_path: Path) -> None:
    run_filter(load_spec(spec_path), tmp_path / "out", check_result())
    kept = [row for row in PATIENTS if row[0] in {"p1", "p2", "p9"}]
    rows = [batch.to_pylist() for batch in read_batches(tmp_path / "out" / "patients.csv")]
    assert [tuple(row.values()) for row in rows[0]] == kept  # spaces, quotes, newlines exactly as written
    source = pq.ParquetFile(spec_path.parent / "events.parquet")
    output = pq.ParquetFile(tmp_path / "out" / "events.parquet")
    assert output.schema_arrow == source.schema_arrow
    assert output.metadata.row_group(0).column(0).compression == "ZSTD"


def test_integer_number_column_without_keys(tmp_path: Path) -> None:
    spec_text = "name: ints\npurpose: planning\ntables:\n  - {name: events, path: events.parquet, nhs_number: nhs}\n"
    spec = load_spec(write_extract(tmp_path / "in", spec_text))
    manifest = run_filter(spec, tmp_path / "out", check_result())
    assert pq.read_table(tmp_path / "out" / "events.parquet").column("nhs").to_pylist() == [N[0], N[3], N[2]]
    assert manifest.table("events").removed["opted_out"] == 1
    assert manifest.people_removed["opted_out"] == 1  # distinct NHS numbers when there are no keys


def test_direct_care_is_copied_unfiltered(tmp_path: Path) -> None:
    spec = load_spec(write_extract(tmp_path / "in", SPEC.replace("research", "direct_care")))
    manifest = run_filter(spec, tmp_path / "out", None)
    assert not manifest.filtered and "direct_care" in (manifest.not_filtered_reason or "")
    assert (tmp_path / "out" / "patients.csv").read_bytes() == (tmp_path / "in" / "patients.csv").read_bytes()
    assert manifest.table("patients").rows_out == len(PATIENTS)


def test_secondary_use_without_check_result_is_refused(spec_path: Path, tmp_path: Path) -> None:
    with pytest.raises(NoVersionError):
        run_filter(load_spec(spec_path), tmp_path / "out", None)
    assert not (tmp_path / "out").exists()


def test_failure_leaves_nothing_and_keeps_old_output(spec_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous run")
    (spec_path.parent / "notes.csv").write_text("pid,text\np1,a\np2,b,extra\n")  # ragged row on line 3
    with pytest.raises(InputError) as error:
        run_filter(load_spec(spec_path), out, check_result())
    assert error.value.line == 3
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_manifest_holds_no_number_or_key(spec_path: Path, tmp_path: Path) -> None:
    run_filter(load_spec(spec_path), tmp_path / "out", check_result())
    text = (tmp_path / "out" / "manifest.json").read_text()
    assert not [str(n) for n in N if str(n) in text]
    keys = {pid for pid, *_ in PATIENTS} | {pid for pid, _ in EVENTS} | set(NOTES)
    assert not [key for key in keys if key and f'"{key}"' in text]
    assert read_manifest(tmp_path / "out") == Manifest.from_dict(json.loads(text))


def test_integer_person_keys(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.table({"pid": [1, 2, 2, 3], "nhs": [N[0], N[1], N[6], N[9]]}), folder / "a.parquet")
    pq.write_table(pa.table({"pid": pa.array([2, 1, 4, None], pa.int32())}), folder / "b.parquet")
    spec_text = (
        "name: k\npurpose: research\ntables:\n  - {name: a, path: a.parquet, nhs_number: nhs, person_key: pid}\n"
        "  - {name: b, path: b.parquet, person_key: pid}\n"
    )
    (folder / "spec.yaml").write_text(spec_text)
    manifest = run_filter(load_spec(folder / "spec.yaml"), tmp_path / "out", check_result())
    assert pq.read_table(tmp_path / "out" / "b.parquet").column("pid").to_pylist() == [1]
    assert manifest.people_removed["unchecked"] == 2  # person 3 (never sent) and 4 (never seen)
    assert np.array_equal(pq.read_table(tmp_path / "out" / "a.parquet").column("pid").to_numpy(), [1])
    # only declared columns, the key first: the output keeps the source's order (the proof compares schemas)
    assert pq.read_schema(tmp_path / "out" / "a.parquet").names == ["pid", "nhs"]


def test_a_person_key_of_structs_is_refused_naming_the_column(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    keys = pa.array([{"a": 1}, {"a": 2}], pa.struct([("a", pa.int64())]))
    pq.write_table(pa.table({"nhs": [N[0], N[1]], "pid": keys}), folder / "a.parquet")
    (folder / "spec.yaml").write_text(
        "name: k\npurpose: research\ntables:\n  - {name: a, path: a.parquet, nhs_number: nhs, person_key: pid}\n"
    )
    with pytest.raises(InputError, match="person key column has type struct") as caught:
        run_filter(load_spec(folder / "spec.yaml"), tmp_path / "out", check_result())
    assert caught.value.field == "pid" and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("members", "probe", "expected"),
    [
        ([3, 5, 2**40], [3, 5, 2**40, None, 4, 2**41], [1, 1, 1, 0, 0, 0]),  # sparse: hash index
        ([3, 5, 9], [3, 5, 9, None, 4, -1, 10], [1, 1, 1, 0, 0, 0, 0]),  # dense: bitmap
        ([9, 3, 9, None, 5, 3], [3, 5, 9, None, 4], [1, 1, 1, 0, 0]),  # repeats and no key, as pass 1 hands them
        (["b", "a", "b", None], ["a", "b", "c"], [1, 1, 0]),
        (["a", " b", "c"], ["a", "b", "c ", None, "", "d"], [1, 1, 1, 0, 0, 0]),  # text, trimmed
        # text that is an integer's decimal form is held as that integer; any other text stays text
        (
            ["7", "007", "x1", "12", "-4", "0"],
            ["7", "007", "0007", "12", "012", "x1", "-4", "4", "0", "00"],
            [1, 1, 0, 1, 0, 1, 1, 0, 1, 0],
        ),
    ],
)
def test_key_sets(members: list[object], probe: list[object], expected: list[int]) -> None:
    from optout.person_keys import KeyKind, KeySet

    kind = KeyKind.of([pa.array(members).type])
    keys = KeySet([kind.column(pa.array(members))], kind)
    assert keys.contains(kind.column(pa.array(probe))).tolist() == [bool(e) for e in expected]


@pytest.mark.parametrize(
    ("ranges", "bitmap"),
    [
        ([(5000, 6000), (4000, 4500), (9000, 12000), (-300, 10)], True),  # dense: the bitmap grows down and up
        ([(0, 10**4), (10**12, 10**12 + 10)], False),  # sparse from the second batch: the bitmap becomes values
        ([(10**15, 10**15 + 10**9)], False),  # sparse from the first
    ],
    ids=["grown", "turns-sparse", "sparse"],
)
@pytest.mark.parametrize("one_by_one", [False, True], ids=["scattered", "or-ed"])
def test_key_sets_grown_batch_by_batch_hold_exactly_the_keys_added(
    monkeypatch: pytest.MonkeyPatch, ranges: list[tuple[int, int]], bitmap: bool, one_by_one: bool
) -> None:
    """Pass 1 adds keys batch by batch, repeats and nulls included: memory follows the keys, not the rows."""
    from optout import person_keys

    monkeypatch.setattr(person_keys, "_COMPACT_AT", 500)  # de-duplicate often
    monkeypatch.setattr(person_keys, "_BITMAP_MIN_BITS", 64)
    monkeypatch.setattr(person_keys, "_SPARSE_ADD", 10**9 if one_by_one else 0)
    rng = np.random.default_rng(7)
    keys = person_keys.KeySet(kind=person_keys.KeyKind.INTEGER)
    added: set[int] = set()
    for low, high in ranges:
        values = rng.integers(low, high, 300)
        batch = pa.array(np.r_[values, values[:50]], mask=np.r_[np.zeros(300, bool), np.ones(50, bool)])
        keys.add(batch)
        added.update(values.tolist())
    probe = np.r_[np.array(sorted(added)), rng.integers(-1000, 10**6, 2000), 10**12 + 11, -(2**62)]
    expected = np.isin(probe, np.array(sorted(added)))
    assert keys.contains(pa.array(probe)).tolist() == expected.tolist()
    assert not keys.contains(pa.array([None], type=pa.int64())).any()
    assert (keys._bits is not None) is bitmap


def test_text_key_sets_grown_batch_by_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    from optout import person_keys

    monkeypatch.setattr(person_keys, "_COMPACT_AT", 3)
    kind = person_keys.KeyKind.TEXT
    keys = person_keys.KeySet(kind=kind)
    for batch in (["a", "b", None], ["b", "c"], ["d", "a", "e"]):
        keys.add(kind.column(pa.array(batch, type=pa.string())))
    assert keys.contains(kind.column(pa.array(["a", "c", "e", "f", None, " d "]))).tolist() == [1, 1, 1, 0, 0, 1]
    keys.add(pa.array(["f"]))  # an add after a probe is seen by the next probe
    assert keys.contains(pa.array(["f"])).tolist() == [True]


@pytest.mark.parametrize("kind", ["integer", "sparse", "text"])
def test_people_are_counted_once_under_their_first_reason(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """Pass 1 notes each removed person's key in one set per reason; the count takes each person once, under
    the lowest code any of their rows had, as a sort of every (key, code) pair would."""
    from optout import cascade, person_keys
    from optout.clearance import CODE_COUNT

    monkeypatch.setattr(person_keys, "_COUNT_WINDOW_BITS", 64)  # keys unpacked a few at a time
    rng = np.random.default_rng(5)
    values = rng.integers(0, 400, 3000) * (10**9 if kind == "sparse" else 1)
    codes = rng.choice([1, 2, 3, 4, 5], 3000, p=[0.05, 0.1, 0.15, 0.3, 0.4]).astype(np.uint8)
    keys = pa.array([str(v) if v % 3 else f"k{v}" for v in values]) if kind == "text" else pa.array(values)
    key_kind = person_keys.KeyKind.TEXT if kind == "text" else person_keys.KeyKind.INTEGER
    sets = [person_keys.KeySet(kind=key_kind) for _ in range(CODE_COUNT)]
    for start in range(0, 3000, 250):
        cascade._add_by_code(sets, keys.slice(start, 250), codes[start : start + 250])
    first: dict[object, int] = {}
    for key, code in zip(keys.to_pylist(), codes.tolist(), strict=True):
        first[key] = min(code, first.get(key, code))
    expected = np.bincount(list(first.values()), minlength=CODE_COUNT)
    assert cascade._count_people(sets).tolist() == expected.tolist()


def test_key_bitmaps_built_in_windows_match_one_built_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    from optout import person_keys

    offsets = np.random.default_rng(3).integers(0, 5000, 3000)
    whole = person_keys.bitmap(offsets, 5001)
    monkeypatch.setattr(person_keys, "_BITMAP_WINDOW_BITS", 64)
    assert np.array_equal(person_keys.bitmap(offsets, 5001), whole)
    expected = np.zeros(5001, dtype=bool)
    expected[offsets] = True
    assert np.array_equal(np.unpackbits(whole, bitorder="little")[:5001], expected)


@pytest.mark.parametrize("store_schema", [True, False], ids=["arrow-schema", "parquet-types-only"])
@pytest.mark.parametrize("person_key", [None, "pid"], ids=["numbers-only", "kept-for-pass-two"])
def test_parquet_output_keeps_every_column_type_and_value(
    tmp_path: Path, store_schema: bool, person_key: str | None
) -> None:
    """Repetitive text is read and written as dictionary indices, near-unique columns skip the dictionary
    attempt, and with a person key pass 1's columns are kept and put back beside the others in pass 2:
    none of it may change what a reader of the output sees, whoever wrote the source."""
    rows = 3000
    numbers = np.resize(N[:8], rows)  # opted-out and unchecked people among them
    table = pa.table(
        {
            "pid": pa.array(np.resize(np.arange(8), rows)),  # one person per number
            "nhs": numbers.astype(str),
            "code": pa.array(np.resize(["E11", "I10", "J45"], rows)),
            "wide": pa.array(np.resize(["x" * 40, "y" * 40], rows), type=pa.large_string()),
            "free_text": pa.array([f"note {i}" for i in range(rows)]),
            "category": pa.array(np.resize(["a", "b"], rows)).dictionary_encode(),
            "seen_at": pa.array(np.arange(rows) * 10**9, type=pa.timestamp("ns", tz="Europe/London")),
            "stay": pa.array(np.arange(rows), type=pa.duration("s")),
            "amount": pa.array([None, *range(1, rows)], type=pa.decimal128(9, 2)),
            "flags": pa.array([[i % 2 == 0] for i in range(rows)]),
            "small": pa.array(np.arange(rows) % 7, type=pa.uint32()),
        },
        metadata={"source": "test"},
    )
    table = table.cast(table.schema.set(0, table.schema.field("pid").with_nullable(False)))  # REQUIRED in Parquet
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(table, folder / "events.parquet", store_schema=store_schema, row_group_size=1000)
    key = f", person_key: {person_key}" if person_key else ""
    spec_text = (
        f"name: types\npurpose: research\ntables:\n  - {{name: events, path: events.parquet, nhs_number: nhs{key}}}\n"
    )
    (folder / "spec.yaml").write_text(spec_text)
    manifest = run_filter(load_spec(folder / "spec.yaml"), tmp_path / "out", check_result())
    source = pq.ParquetFile(folder / "events.parquet")
    output = pq.ParquetFile(tmp_path / "out" / "events.parquet")
    assert output.schema_arrow.equals(source.schema_arrow, check_metadata=True)
    assert output.metadata.metadata == source.metadata.metadata
    kept = np.isin(numbers, N[:6])
    assert manifest.table("events").rows_out == int(kept.sum()) == output.metadata.num_rows
    assert output.read().equals(source.read().filter(pa.array(kept)))


def _parts_extract(folder: Path) -> Path:
    """A Parquet table of several row groups, with a key-only table beside it."""
    folder.mkdir()
    rows = 5000
    numbers = np.resize(N[:8], rows)
    events = pa.table({"nhs": numbers, "pid": np.resize(np.arange(8), rows), "value": np.arange(rows) * 0.5})
    pq.write_table(events, folder / "events.parquet", row_group_size=700)
    pq.write_table(pa.table({"pid": np.arange(12)}), folder / "people.parquet")
    (folder / "spec.yaml").write_text(
        "name: parts\npurpose: research\ntables:\n  - {name: events, path: events.parquet, nhs_number: nhs, "
        "person_key: pid}\n  - {name: people, path: people.parquet, person_key: pid}\n"
    )
    return folder / "spec.yaml"


@pytest.mark.parametrize("budget", [0, 50_000, 10**9], ids=["none-kept", "some-kept", "all-kept"])
def test_output_is_the_same_whatever_pass_one_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    """Pass 2 puts kept columns beside freshly read ones: the bytes written must not depend on how many."""
    from optout.homes.files import engine as arrow_files
    from optout.homes.files.parquet_write import BatchWriter

    spec = load_spec(_parts_extract(tmp_path / "in"))
    monkeypatch.setattr("optout.homes.files.parquet_read.BATCH_ROWS", 1000)
    reference = run_filter(spec, tmp_path / "reference", check_result())
    written: list[int] = []
    monkeypatch.setattr(BatchWriter, "write", _counting(BatchWriter.write, written))
    monkeypatch.setattr(arrow_files, "KEPT_BYTES", budget)
    manifest = run_filter(spec, tmp_path / "out", check_result())
    assert [t.sha256 for t in manifest.tables] == [t.sha256 for t in reference.tables]
    assert _counts(manifest) == _counts(reference)
    assert sum(written) == 5000 + 12 and len(written) > 5  # batches of one part's size, not one per row group


def _counting(write: object, written: list[int]) -> object:
    def counted(self: object, batch: pa.RecordBatch, keep: object = None) -> None:
        written.append(batch.num_rows)
        write(self, batch, keep)  # type: ignore[operator]

    return counted


@pytest.mark.parametrize("budget", [0, 10**9], ids=["none-kept", "all-kept"])
def test_a_table_replaced_between_the_passes_is_read_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    """Both passes read the file opened first: rows of a replacement never meet pass 1's kept columns."""
    from optout.cascade import Cascade
    from optout.homes.files import engine as arrow_files

    monkeypatch.setattr(arrow_files, "KEPT_BYTES", budget)
    spec_path = _parts_extract(tmp_path / "in")
    reference = run_filter(load_spec(spec_path), tmp_path / "reference", check_result())
    learn = Cascade.learn_all

    def replace_file(self: Cascade, batches_of: Callable[[TableSpec], Iterable[pa.RecordBatch]]) -> None:
        learn(self, batches_of)
        swapped = tmp_path / "in" / "swap.parquet"
        pq.write_table(pa.table({"nhs": [N[6]] * 5000, "pid": [0] * 5000, "value": [1.0] * 5000}), swapped)
        swapped.replace(tmp_path / "in" / "events.parquet")

    monkeypatch.setattr(Cascade, "learn_all", replace_file)
    manifest = run_filter(load_spec(spec_path), tmp_path / "out", check_result())
    assert [t.sha256 for t in manifest.tables] == [t.sha256 for t in reference.tables]
