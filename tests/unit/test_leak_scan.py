"""The every-cell leak scan finds uncleared NHS numbers in any column, any type, any writing of them."""

from __future__ import annotations

import decimal
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from optout.leak_scan import RAW_BYTES, LeakScan, uncleared_in_raw, uncleared_values
from optout.lookup import NumberSet
from optout.nhs_number import synthetic

NUMBERS = synthetic(6)
CLEARED, UNCLEARED = NUMBERS[:3], NUMBERS[3:]
CLEARED_SET = NumberSet(CLEARED)
OUT = str(UNCLEARED[0])  # one uncleared number as ten digits
OK = str(CLEARED[0])


def spaced(text: str, sep: str = " ") -> str:
    return f"{text[:3]}{sep}{text[3:6]}{sep}{text[6:]}"


def count(values: pa.Array | pa.ChunkedArray) -> int:
    return uncleared_values(values, CLEARED_SET)


@pytest.mark.parametrize(
    ("cell", "found"),
    [
        (OUT, 1),
        (f"  {OUT}  ", 1),
        (spaced(OUT), 1),
        (spaced(OUT, "-"), 1),
        (f"{OUT}.0", 1),
        ("\u00a0" + OUT, 1),
        (" ".join(OUT), 1),  # one digit at a time: the normaliser reads it
        (f"seen at clinic, NHS no {spaced(OUT)} (next of kin {OK})", 1),
        (f"NHS{OUT}x", 1),
        (f"3f{OUT}c0", 0),  # ten digits inside a hex token (a keyed hash, a UUID) are chance, not a number
        (f"123e4567-e89b-12d3-a456-{OUT}ab", 0),
        (f"hash 9f{OUT} then {OUT}", 1),
        (f"{OUT} {UNCLEARED[1]},{UNCLEARED[2]}", 3),
        (f"{OUT}{OUT}", 0),  # twenty digits: no number the normaliser would read
        (f"-0.{OUT}", 0),  # the digits of a decimal (a float written as text), either side of its point
        (f"{OUT}.5", 0),
        (f"12.{OUT}e-3", 0),
        (f"NHS no. {OUT}.", 1),  # a full stop after a word or at the end of a sentence is no decimal point
        (f"ref.{OUT}. next", 1),
        (f"1{OUT}", 0),
        (OK, 0),
        (spaced(OK), 0),
        (str(UNCLEARED[0] + 1), 0),  # fails the check digit
        ("0000000000", 0),
        ("2023-01-05 12:30:00", 0),
        ("", 0),
    ],
    ids=lambda value: "" if isinstance(value, str) else str(value),  # no number in a test's name
)
def test_text_cells(cell: str, found: int) -> None:
    for kind in (pa.string(), pa.large_string(), pa.string_view()):
        assert count(pa.array([cell, None], kind)) == found, kind
    assert count(pa.array([cell.encode()], pa.binary())) == found


FULL_WIDTH = {ord("0") + i: 0xFF10 + i for i in range(10)}  # 0-9 to their full-width forms


@pytest.mark.parametrize(
    ("cell", "found"),
    [
        (OUT.translate(FULL_WIDTH), 1),  # full-width digits, as East Asian input methods type them
        (f"{OUT[:3]}\u200b{OUT[3:]}", 1),  # a zero-width space inside
        (spaced(OUT, "\u2009"), 1),  # thin spaces between the groups
        (f"note: {OUT[:5]}\u00ad{OUT[5:]} seen", 1),  # a soft hyphen inside, in free text
        (f"naïve café {OUT}", 1),  # other non-ASCII text beside a plain number: counted once
        (OK.translate(FULL_WIDTH), 0),
        ("".join(chr(0xFF41 + i) for i in range(12)), 0),  # full-width letters
    ],
    ids=lambda value: "" if isinstance(value, str) else str(value),
)
def test_text_is_read_as_a_person_reads_it(cell: str, found: int) -> None:
    for kind in (pa.string(), pa.large_string(), pa.string_view()):
        assert count(pa.array(["plain ascii", cell, None], kind)) == found, kind


def test_numeric_columns() -> None:
    out, ok = int(UNCLEARED[0]), int(CLEARED[0])
    assert count(pa.array([out, ok, None, 5, -out], pa.int64())) == 1
    assert count(pa.array([out, ok], pa.uint64())) == 1
    assert count(pa.array([2**63 + out], pa.uint64())) == 0
    assert count(pa.array([float(out), float(ok), np.nan, out + 0.5])) == 1
    assert count(pa.array(np.array([out, ok], dtype=np.float32))) <= 1  # float32 cannot hold ten digits exactly
    assert count(pa.array([decimal.Decimal(out), decimal.Decimal(f"{out}.00")], pa.decimal128(14, 2))) == 2
    assert count(pa.array([decimal.Decimal(out)], pa.decimal256(40, 0))) == 1
    assert count(pa.array([1, 2], pa.int16())) == 0
    assert count(pa.array([ok // 10], pa.int64())) == 0  # a lost leading digit is no number


def test_nested_and_encoded_columns() -> None:
    out = int(UNCLEARED[0])
    assert count(pa.array([[out, 1], None, [out]], pa.list_(pa.int64()))) == 2
    assert count(pa.array([[out, 1], [2, out]], pa.list_(pa.int64())).slice(1)) == 1
    assert count(pa.array([[OUT], [OK]], pa.large_list(pa.string()))) == 1
    assert count(pa.array([[OUT, OK]], pa.list_(pa.string(), 2))) == 1
    assert (
        count(
            pa.array(
                [{"a": OUT, "b": {"c": out}}, None],
                pa.struct([("a", pa.string()), ("b", pa.struct([("c", pa.int64())]))]),
            )
        )
        == 2
    )
    assert count(pa.array([[("k", OUT)], [(OUT, OK)]], pa.map_(pa.string(), pa.string())).slice(1)) == 1
    assert count(pa.array([OUT, "x", OUT, None]).dictionary_encode()) == 2
    assert count(pa.DictionaryArray.from_arrays(pa.array([0, 0, 1]), pa.array([OK, OUT]))) == 1
    assert count(pa.chunked_array([pa.array([out]), pa.array([out])])) == 2
    assert count(pa.RunEndEncodedArray.from_arrays(pa.array([2, 3], pa.int32()), pa.array([OUT, "x"]))) == 2
    assert count(pa.array([OUT.encode()], pa.binary(10))) == 1
    assert count(pa.array([uuid.uuid4().bytes], pa.uuid())) == 0


def test_types_that_cannot_hold_a_number_are_skipped() -> None:
    assert count(pa.array([1_700_000_000], pa.timestamp("s"))) == 0
    assert count(pa.array([True, None])) == 0
    assert count(pa.array([None, None])) == 0


def test_scan_counts_per_table_and_column_and_honours_exclusions() -> None:
    scan = LeakScan(CLEARED_SET, excluded={"people": {"sample_id"}})
    batch = pa.record_batch(
        {
            "nhs_number": pa.array([int(CLEARED[0]), int(CLEARED[1])]),
            "next_of_kin": pa.array([OK, None]),  # cleared numbers elsewhere are fine
            "notes": pa.array([f"father {OUT}", "x"]),
            "sample_id": pa.array([OUT, OUT]),
        }
    )
    scan.batch("people", batch)
    scan.batch("people", batch)
    leaks = scan.leaks()
    assert [(leak.table, leak.column, leak.values) for leak in leaks] == [("people", "notes", 2)]
    assert scan.total() == 2
    assert OUT not in repr(leaks)


def test_unknown_type_is_unscannable_not_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    from optout import leak_scan

    scan = LeakScan(CLEARED_SET)
    scan.batch("t", pa.table({"ok": [1]}))
    assert not scan.leaks()
    monkeypatch.setattr(leak_scan, "_cannot_hold", lambda kind: False)  # a type no branch knows
    scan.batch("t", pa.table({"odd": pa.array([(1, 2, 3)], pa.month_day_nano_interval())}))
    assert [(leak.column, leak.unscannable) for leak in scan.leaks()] == [("odd", True)]


def test_raw_bytes_see_what_a_quoting_trick_hides(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    # An unbalanced quote: a reader takes the rest of the file as one value of the first row.
    path.write_text(f'id,nhs_number\n1,"{OK}\n2,{OUT}\n3,{spaced(str(UNCLEARED[1]))}\r\n4;"{UNCLEARED[2]}"\n')
    assert uncleared_in_raw(path, CLEARED_SET) == 3
    scan = LeakScan(CLEARED_SET)
    scan.raw_file("t", path)
    assert [(leak.column, leak.values) for leak in scan.leaks()] == [(RAW_BYTES, 3)]


def test_raw_blocks_do_not_split_a_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from optout import leak_scan

    monkeypatch.setattr(leak_scan, "_RAW_BLOCK_BYTES", 7)
    path = tmp_path / "x.csv"
    path.write_text("".join(f"{n},{n}\n" for n in UNCLEARED) + "tail" + OUT)
    assert uncleared_in_raw(path, CLEARED_SET) == 7  # "tail<number>": letters are an edge too
    path.write_text(OUT)
    assert uncleared_in_raw(path, CLEARED_SET) == 1


def test_raw_text_is_cut_at_tabs_and_line_ends_not_at_letters(tmp_path: Path) -> None:
    """Tab, CR and LF are field edges (a TSV file, a record's end); the letters t, r and n are not."""
    from optout.leak_scan import _RAW_EDGES

    assert set(_RAW_EDGES) >= {ord("\t"), ord("\r"), ord("\n")} and not set(_RAW_EDGES) & set(b"\\trn")
    path = tmp_path / "a.tsv"
    path.write_bytes(f"id\tnote\r\n1\t{OUT}\r\n2\tok\n".encode())
    assert uncleared_in_raw(path, CLEARED_SET) == 1


def test_utf16_raw(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(f"a\n{OUT}\n".encode("utf-16"))
    assert uncleared_in_raw(path, CLEARED_SET, encoding="utf-16") == 1


def test_file_scan_reads_every_column_of_parquet_and_csv(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    table = pa.table({"id": [1, 2], "code": ["a", "a"], "notes": [f"kin {OK}", f"see {OUT}"], "n": [OUT, OUT]})
    pq.write_table(table, tmp_path / "t.parquet")
    scan = LeakScan(CLEARED_SET)
    scan.file("t", tmp_path / "t.parquet")
    assert [(leak.column, leak.values) for leak in scan.leaks()] == [("n", 2), ("notes", 1)]
    (tmp_path / "t.csv").write_text(f'id,{OUT}\n1,"0{OK}"\n2,"a ""{OUT}"""\n3,x,y\n')  # header as data, ragged
    scan = LeakScan(CLEARED_SET)
    scan.file("t", tmp_path / "t.csv")
    assert {leak.column: leak.values for leak in scan.leaks()} == {RAW_BYTES: 2, "column 2": 2}
    (tmp_path / "s.csv").write_text(f"id;notes\n1;see {OUT}, twice\n")  # a comma inside a semicolon file's cell
    scan = LeakScan(CLEARED_SET)
    scan.file("t", tmp_path / "s.csv", delimiter=";")
    assert {leak.column: leak.values for leak in scan.leaks()} == {RAW_BYTES: 1, "notes": 1}


def test_a_dictionary_value_no_row_uses_still_counts() -> None:
    unused = pa.DictionaryArray.from_arrays(pa.array([0, 0]), pa.array([OK, OUT]))
    assert count(unused) == 1


def test_the_in_text_prefilter_passes_every_cell_the_regex_could_match() -> None:
    """A cell skipped before the regex rounds (no run of exactly ten digits, no runs of three and four) is a
    cell the regex cannot match: checked against the regex itself on random text of digits and edges."""
    import random

    import pyarrow.compute as pc

    from optout.leak_scan import _IN_TEXT, _may_match_in_text

    rng = random.Random(7)
    cells = ["".join(rng.choice("0123456789" * 6 + " -.,xAf") for _ in range(rng.randint(0, 40))) for _ in range(4000)]
    cells += ["943 476 5919", "x9434765919", "-0.12345678901234567", "", "123-456-7890 and 1"]
    array = pa.array(cells).slice(3)  # a slice: offsets from the middle of the buffers
    could = pc.match_substring_regex(array, _IN_TEXT).to_numpy(zero_copy_only=False)
    kept = _may_match_in_text(array)
    assert not (could & ~kept).any()
    assert kept.sum() < len(array)  # it does skip cells
    assert _may_match_in_text(pa.array(cells, pa.large_string()))[-5:].tolist() == [True, True, False, False, True]


def test_every_cell_the_normaliser_reads_whole_has_the_whole_shape() -> None:
    """Cells that skip the normaliser (not digits, blanks, dashes and ``.0``) are never cells it reads as one
    valid number: checked on numbers written with random blanks (Unicode ones too), dashes and ``.0``."""
    import random

    import pyarrow.compute as pc

    from optout.leak_scan import _WHOLE_SHAPE
    from optout.nhs_number import Status, normalise

    rng = random.Random(11)
    noise = [" ", "-", "\t", "\u00a0", "\u2007", "\u3000", "\u0085", "\u2028", "x", ".", ",", "/"]
    cells = []
    for number in synthetic(400):
        text = "".join(d + (rng.choice(noise) if rng.random() < 0.15 else "") for d in f"{number:010d}")
        cells.append(rng.choice(["", " ", "\u00a0"]) + text + rng.choice(["", ".0", ".000", " ", ".5", "\u2029"]))
    array = pa.array(cells)
    valid = normalise(array).status == Status.VALID
    shaped = pc.match_substring_regex(array, _WHOLE_SHAPE).to_numpy(zero_copy_only=False)
    assert valid.sum() > 100 and not (valid & ~shaped).any()
