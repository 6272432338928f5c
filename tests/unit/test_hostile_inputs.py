"""Hostile inputs: each generated file is filtered exactly right or refused (InputError, exit 2) with nothing
written, and every byte written is scanned for the uncleared numbers of the cohort (none may be there)."""

from __future__ import annotations

import decimal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from filter_data import make_check_result

from optout.errors import InputError
from optout.filter import run_filter
from optout.input_scan import UndeclaredNumbers
from optout.leak_scan import LeakScan, uncleared_in_raw
from optout.lookup import NumberSet
from optout.nhs_number import synthetic
from optout.spec import load_spec

NUMBERS = synthetic(7)
CLEARED, OPTED_OUT, UNCHECKED = NUMBERS[:4], NUMBERS[4:6], NUMBERS[6:]
COHORT = NUMBERS[:6]
C = [str(n) for n in CLEARED]
O = [str(n) for n in OPTED_OUT]  # noqa: E741 - reads as a letter beside C and U
U = str(UNCHECKED[0])
REFUSED = -1


@dataclass(frozen=True)
class Case:
    name: str
    write: Callable[[Path], str]  # writes the input, returns the table's spec line
    kept: int  # rows the output must hold, or REFUSED
    leaks: int = 0  # uncleared numbers the proof's scan must find in the output (cells and raw bytes)


def csv_case(name: str, text: str | bytes, kept: int, column: str = "nhs_number", leaks: int = 0) -> Case:
    def write(src: Path) -> str:
        data = text.encode() if isinstance(text, str) else text
        (src / "t.csv").write_bytes(data)
        return f"{{name: t, path: t.csv, nhs_number: {column}}}"

    return Case(name, write, kept, leaks)


def parquet_case(name: str, table: Callable[[], pa.Table], kept: int, person_key: str | None = None) -> Case:
    def write(src: Path) -> str:
        pq.write_table(table(), src / "t.parquet")
        key = f", person_key: {person_key}" if person_key else ""
        return f"{{name: t, path: t.parquet, nhs_number: nhs_number{key}}}"

    return Case(name, write, kept)


def spaced(text: str, sep: str = " ") -> str:
    return f"{text[:3]}{sep}{text[3:6]}{sep}{text[6:]}"


ROWS = f"{C[0]},a\n{O[0]},b\n{C[1]},c\n{O[1]},d\n{U},e\n"
CASES = [
    csv_case("plain", f"nhs_number,x\n{ROWS}", 2),
    csv_case("bom_crlf", "\ufeff" + f"nhs_number,x\r\n{ROWS}".replace("\n", "\r\n"), 2),
    csv_case("mixed_line_endings", f"nhs_number,x\r\n{C[0]},a\n{O[0]},b\r\n{C[1]},c\r", 2),
    csv_case("spaced_dashed_padded", f'nhs_number,x\n" {spaced(C[0])} ",a\n{spaced(O[0], "-")},b\n{C[1]}.0,c\n', 2),
    csv_case("nbsp_around_opted_out", f"nhs_number,x\n{C[0]},a\n\u00a0{O[0]}\u00a0,b\n", 1),
    # RFC 4180 allows it: one row whose note holds a line with an opted-out number; the filter's input
    # scan finds the number in the note and refuses the extract (exit 1).
    csv_case("quoted_newline_in_free_text", f'nhs_number,x\n{C[0]},"line\n{O[0]},b"\n{O[1]},c\n', REFUSED),
    csv_case("unbalanced_quote_swallows_rows", f'nhs_number,x\n{C[0]},"a\n{O[0]},b\n{O[1]},c\n', REFUSED),
    csv_case("quote_inside_unquoted_field", f'nhs_number,x\n{C[0]},a"b\n{O[0]},c\n', 1),  # read as a"b
    csv_case("ragged_long_row", f"nhs_number,x\n{C[0]},a\n{O[0]},b,{O[0]}\n", REFUSED),
    csv_case("ragged_short_row", f"nhs_number,x\n{C[0]},a\n{O[0]}\n", REFUSED),
    csv_case("duplicate_header", f"nhs_number,nhs_number\n{C[0]},{O[0]}\n", REFUSED),
    csv_case("empty_file", "", REFUSED),
    csv_case("header_only", "nhs_number,x\n", 0),
    csv_case("header_is_data", f"{C[0]},{O[0]}\n{C[1]},{O[1]}\n", REFUSED, column="nhs_number"),
    csv_case("cp1252_undeclared", f"nhs_number,x\n{C[0]},caf\xe9\n{O[0]},b\n".encode("cp1252"), REFUSED),
    csv_case("utf16_undeclared", f"nhs_number,x\n{C[0]},a\n{O[0]},b\n".encode("utf-16"), REFUSED),
    csv_case("long_field", f"nhs_number,x\n{C[0]},{'z' * 2_000_000}\n{O[0]},b\n", 1),
    csv_case("missing_and_placeholder", f"nhs_number,x\n,a\n0000000000,b\nunknown,c\n{C[0]},d\n", 1),
    csv_case("bad_check_digit", f"nhs_number,x\n{int(C[0]) + 1},a\n{C[1]},b\n", 1),
    csv_case("scientific_notation", f"nhs_number,x\n{float(C[0]):e},a\n{C[1]},b\n", 1),
    parquet_case("int64", lambda: pa.table({"nhs_number": NUMBERS}), 4),
    parquet_case("uint64", lambda: pa.table({"nhs_number": pa.array(NUMBERS, pa.uint64())}), 4),
    parquet_case("float_with_nan", lambda: pa.table({"nhs_number": [*NUMBERS.astype(float), np.nan]}), 4),
    parquet_case("decimal", lambda: pa.table({"nhs_number": pa.array([decimal.Decimal(int(n)) for n in NUMBERS])}), 4),
    parquet_case(
        "large_string", lambda: pa.table({"nhs_number": pa.array([str(n) for n in NUMBERS], pa.large_string())}), 4
    ),
    parquet_case(
        "dictionary", lambda: pa.table({"nhs_number": pa.array([str(n) for n in NUMBERS]).dictionary_encode()}), 4
    ),
    parquet_case("list_column", lambda: pa.table({"nhs_number": pa.array([[int(n)] for n in NUMBERS])}), REFUSED),
    parquet_case(
        "struct_column", lambda: pa.table({"nhs_number": pa.array([{"n": int(n)} for n in NUMBERS])}), REFUSED
    ),
    parquet_case(
        "binary_column", lambda: pa.table({"nhs_number": pa.array([str(n).encode() for n in NUMBERS])}), REFUSED
    ),
    parquet_case("date_column", lambda: pa.table({"nhs_number": pa.array([1, 2], pa.date32())}), REFUSED),
    parquet_case("empty", lambda: pa.table({"nhs_number": pa.array([], pa.int64())}), 0),
    parquet_case(
        "duplicate_names",
        lambda: pa.Table.from_arrays([pa.array(NUMBERS), pa.array(NUMBERS)], ["nhs_number"] * 2),
        REFUSED,
    ),
    parquet_case(
        "zones_uuid_decimal_kept",
        lambda: pa.table(
            {
                "nhs_number": NUMBERS,
                "at": pa.array(range(7), pa.timestamp("us", tz="Europe/London")),
                "id": pa.array([bytes(16)] * 7, pa.uuid()),
                "amount": pa.array([decimal.Decimal("1.25")] * 7, pa.decimal128(9, 2)),
                "view": pa.array(["x"] * 7, pa.string_view()),
            }
        ),
        4,
    ),
    # pyarrow 26 cannot select rows of view types (nor of lists, structs and maps of them) as they are.
    parquet_case(
        "string_view_number", lambda: pa.table({"nhs_number": pa.array([str(n) for n in NUMBERS], pa.string_view())}), 4
    ),
    parquet_case(
        "views_everywhere",
        lambda: pa.table(
            {
                "nhs_number": pa.array([f" {n} " for n in NUMBERS], pa.string_view()),
                # the first row's person is also the fifth row's, whose number is opted out
                "pid": pa.array(["p4", "p1", "p2", "p3", "p4", "p5", "p6"], pa.string_view()),
                "blob": pa.array([b"\x00" * i for i in range(7)], pa.binary_view()),
                "tags": pa.array([["a"] * i for i in range(7)], pa.list_(pa.string_view())),
                "note": pa.array([{"text": str(i)} for i in range(7)], pa.struct([("text", pa.string_view())])),
                "codes": pa.array([[("k", str(i))] for i in range(7)], pa.map_(pa.string_view(), pa.binary_view())),
            }
        ),
        3,
        person_key="pid",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_input_is_filtered_right_or_refused(tmp_path: Path, case: Case) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    (src / "spec.yaml").write_text(f"name: hostile\npurpose: research\ntables:\n  - {case.write(src)}\n")
    result = make_check_result(COHORT, CLEARED)
    spec = load_spec(src / "spec.yaml")
    if case.kept == REFUSED:
        with pytest.raises((InputError, UndeclaredNumbers)) as refused:
            run_filter(spec, out, result)
        assert not out.exists()
        for number in NUMBERS:
            assert str(number) not in str(refused.value)
        return
    manifest = run_filter(spec, out, result)
    assert manifest.tables[0].rows_out == case.kept
    written = [path for path in out.rglob("*") if path.is_file()]
    scan = LeakScan(NumberSet(CLEARED))
    for path in written:
        scan.file("t", path) if path.suffix in {".csv", ".parquet"} else scan.raw_file("t", path)
        if not case.leaks:
            assert uncleared_in_raw(path, NumberSet(CLEARED)) == 0  # the bytes themselves, compressed or not
    assert scan.total() == case.leaks
    output = out / spec.tables[0].output_name
    if output.suffix == ".parquet":
        assert pq.read_schema(output).remove_metadata() == pq.read_schema(spec.tables[0].path).remove_metadata()
