"""Hostile inputs: each generated file is filtered exactly right or refused (InputError, exit 2) with nothing
written, and every byte written is scanned for the uncleared numbers of the cohort (none may be there)."""

from __future__ import annotations

import decimal
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from filter_data import make_check_result

from optout.errors import InputError
from optout.filter import run_filter
from optout.homes.files.csv_strict import BLOCK_BYTES
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
    frames: Callable[[], dict[str, pd.DataFrame]] | None = None  # the tables as DataFrames, not files
    output: Callable[[Path, Path], None] | None = None  # more checks of the output (folder, input folder)


def csv_case(
    name: str,
    text: str | bytes,
    kept: int,
    column: str = "nhs_number",
    leaks: int = 0,
    dialect: str = "",
    output: Callable[[bytes], bool] | None = None,
) -> Case:
    def write(src: Path) -> str:
        data = text.encode() if isinstance(text, str) else text
        (src / "t.csv").write_bytes(data)
        declared = f", csv: {dialect}" if dialect else ""
        return f"{{name: t, path: t.csv, nhs_number: {column}{declared}}}"

    def check(out: Path, src: Path) -> None:
        assert output is not None and output((out / "t.csv").read_bytes())

    return Case(name, write, kept, leaks, output=check if output else None)


def frame_case(
    name: str, frame: Callable[[], pd.DataFrame], kept: int, output: Callable[[pd.DataFrame], bool] | None = None
) -> Case:
    """A DataFrame filtered by the pandas engine; ``output`` checks the written Parquet read back by pandas."""

    def check(out: Path, src: Path) -> None:
        assert output is not None and output(pd.read_parquet(out / "t.parquet"))

    return Case(
        name,
        lambda src: "{name: t, path: t.parquet, nhs_number: nhs_number}",
        kept,
        frames=lambda: {"t": frame()},
        output=check if output else None,
    )


def sql_case(name: str, column_type: str, values: Callable[[], list[object]], kept: int, extra: str = "") -> Case:
    """A SQLite table (one number column and a note) filtered in the database."""

    def write(src: Path) -> str:
        with sqlite3.connect(src / "db.sqlite") as conn:
            conn.execute(f"CREATE TABLE t (nhs_number {column_type}, note TEXT)")
            conn.executemany("INSERT INTO t VALUES (?, ?)", [(value, "n") for value in values()])
        return f"{{name: t, table: t, connection: 'sqlite:///{src / 'db.sqlite'}', nhs_number: nhs_number{extra}}}"

    return Case(name, write, kept)


def sql_tables(src: Path) -> set[str]:
    path = src / "db.sqlite"
    if not path.exists():
        return set()
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def parquet_case(name: str, table: Callable[[], pa.Table], kept: int, person_key: str | None = None) -> Case:
    def write(src: Path) -> str:
        pq.write_table(table(), src / "t.parquet")
        key = f", person_key: {person_key}" if person_key else ""
        return f"{{name: t, path: t.parquet, nhs_number: nhs_number{key}}}"

    return Case(name, write, kept)


def parquet_from_pandas(src: Path) -> str:
    """A Parquet file pandas wrote: pandas metadata and a named index column that the output must keep."""
    frame = pd.DataFrame({"nhs_number": NUMBERS}, index=pd.Index([f"r{i}" for i in range(7)], name="row"))
    frame.to_parquet(src / "t.parquet")
    return "{name: t, path: t.parquet, nhs_number: nhs_number}"


def pandas_index_kept(out: Path, src: Path) -> None:
    assert list(pd.read_parquet(out / "t.parquet").index) == ["r0", "r1", "r2", "r3"]
    assert pq.read_schema(out / "t.parquet").pandas_metadata == pq.read_schema(src / "t.parquet").pandas_metadata


def spaced(text: str, sep: str = " ") -> str:
    return f"{text[:3]}{sep}{text[3:6]}{sep}{text[6:]}"


ROWS = f"{C[0]},a\n{O[0]},b\n{C[1]},c\n{O[1]},d\n{U},e\n"
CP1252 = f"nhs_number,x\r\n{C[0]},caf\xe9 \u2019\r\n{O[0]},b\r\n".encode("cp1252")
UTF16 = f"nhs_number,x\r\n{C[0]},caf\xe9\r\n{O[0]},b\r\n".encode("utf-16")
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
    csv_case("quote_inside_unquoted_field", f'nhs_number,x\n{C[0]},a"b\n{O[0]},c\n', REFUSED),  # not RFC 4180
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
    csv_case(
        "cp1252_declared",
        CP1252,
        1,
        dialect="{encoding: cp1252}",
        output=lambda b: b == CP1252.rsplit(b"\r\n", 2)[0] + b"\r\n",
    ),
    csv_case("cp1252_declared_utf8", CP1252, REFUSED, dialect="{encoding: utf-8}"),
    csv_case(
        "undefined_cp1252_byte",
        f"nhs_number,x\n{C[0]},a\n{O[0]},".encode() + b"\x81\n",
        REFUSED,
        dialect="{encoding: cp1252}",
    ),
    csv_case(
        "utf16_declared", UTF16, 1, dialect="{encoding: utf-16}", output=lambda b: b.decode("utf-16").count("\r\n") == 2
    ),
    csv_case("utf16le_without_bom", UTF16[2:], REFUSED, dialect="{encoding: utf-16}"),
    csv_case("utf16le_declared_order", UTF16[2:], 1, dialect="{encoding: utf-16-le}"),
    csv_case(
        "bom_kept", "\ufeff" + f"nhs_number,x\n{ROWS}", 2, output=lambda b: b.startswith(b"\xef\xbb\xbfnhs_number,x\n")
    ),
    csv_case("crlf_kept", f"nhs_number,x\n{ROWS}".replace("\n", "\r\n"), 2, output=lambda b: b.count(b"\r\n") == 3),
    csv_case("cr_only_line_endings", f"nhs_number,x\r{ROWS}".replace("\n", "\r"), 2),
    csv_case(
        "quoted_crlf_in_value", f'nhs_number,x\r\n{C[0]},"a\r\nb"\r\n{O[0]},c\r\n', 1, output=lambda b: b'"a\r\nb"' in b
    ),
    csv_case(
        "all_quoted_kept",
        f'"nhs_number","x"\n"{C[0]}","a"\n"{O[0]}","b"\n',
        1,
        output=lambda b: b == f'"nhs_number","x"\n"{C[0]}","a"\n'.encode(),
    ),
    csv_case(
        "minimal_quoting_kept",
        f'nhs_number,x\n{C[0]},"a,b"\n{C[1]},"say ""hi"""\n{O[0]},c\n',
        2,
        output=lambda b: b == f'nhs_number,x\n{C[0]},"a,b"\n{C[1]},"say ""hi"""\n'.encode(),
    ),
    csv_case(
        "semicolon_declared",
        f"nhs_number;x\n{C[0]};a,b\n{O[0]};c\n",
        1,
        dialect="{delimiter: ';'}",
        output=lambda b: b.endswith(b";a,b\n"),
    ),
    csv_case("semicolon_undeclared", f"nhs_number;x\n{C[0]};a\n{O[0]};c\n", REFUSED),
    csv_case("tab_declared", f"nhs_number\tx\n{C[0]}\ta\n{O[0]}\tc\n", 1, dialect="{delimiter: tab}"),
    csv_case("text_after_closing_quote", f'nhs_number,x\n{C[0]},"a"b\n{O[0]},c\n', REFUSED),
    csv_case("stray_quotes_balanced", f'nhs_number,x\n{C[0]},"a\n{O[0]},b\n{O[1]},"c\n', REFUSED),
    csv_case("three_quotes", f'nhs_number,x\n{C[0]},"a""\n{O[0]},b\n', REFUSED),
    csv_case("header_is_other_numbers", f"123456789,x\n{C[0]},a\n", REFUSED, column="x"),
    csv_case(
        "row_longer_than_a_block", f"nhs_number,x\n{C[0]},{'z' * (BLOCK_BYTES + (1 << 20))}\n{O[0]},b\n{C[1]},c\n", 2
    ),
    csv_case(
        "row_longer_than_the_reader",
        f"nhs_number,x\n{C[0]},a\n{O[0]},{'z' * (2 * BLOCK_BYTES + (1 << 20))}\n{C[1]},c\n",
        REFUSED,
    ),
    Case("output_leaves_folder", lambda src: csv_case("", ROWS, 0).write(src)[:-1] + ", output: ../t.csv}", REFUSED),
    Case("output_absolute", lambda src: csv_case("", ROWS, 0).write(src)[:-1] + f", output: {src}/o.csv}}", REFUSED),
    csv_case("blank_line_between_rows", f"nhs_number,x\n{C[0]},a\n\n{O[0]},b\n", 1),
    frame_case(
        "frame_custom_index",
        lambda: pd.DataFrame({"nhs_number": NUMBERS, "x": list("abcdefg")}, index=[f"p{i}" for i in range(7)]),
        4,
        output=lambda f: list(f.index) == ["p0", "p1", "p2", "p3"],
    ),
    frame_case(
        "frame_object_mixed",
        lambda: pd.DataFrame({"nhs_number": [int(C[0]), C[1], spaced(C[2]), None, O[0], int(O[1]), U]}),
        REFUSED,  # filtered right in memory, but Parquet holds one type per column
    ),
    frame_case("frame_float_nan", lambda: pd.DataFrame({"nhs_number": [*NUMBERS.astype(float), np.nan]}), 4),
    frame_case("frame_nullable_int", lambda: pd.DataFrame({"nhs_number": pd.array([*NUMBERS, None], "Int64")}), 4),
    frame_case("frame_category", lambda: pd.DataFrame({"nhs_number": pd.Categorical([str(n) for n in NUMBERS])}), 4),
    frame_case(
        "frame_multiindex",
        lambda: pd.DataFrame(
            {"nhs_number": NUMBERS}, index=pd.MultiIndex.from_tuples([("a", i) for i in range(7)], names=["s", "i"])
        ),
        4,
        output=lambda f: list(f.index) == [("a", 0), ("a", 1), ("a", 2), ("a", 3)],
    ),
    frame_case(
        "frame_duplicate_columns",
        lambda: pd.DataFrame([[int(n), 1] for n in NUMBERS], columns=["nhs_number"] * 2),
        REFUSED,
    ),
    frame_case("frame_list_column", lambda: pd.DataFrame({"nhs_number": [[int(n)] for n in NUMBERS]}), REFUSED),
    sql_case("sql_text", "TEXT", lambda: [str(n) for n in NUMBERS], 4),
    sql_case("sql_integer", "INTEGER", lambda: [int(n) for n in NUMBERS], 4),
    sql_case("sql_spaced_and_null", "TEXT", lambda: [spaced(C[0]), f" {C[1]} ", None, O[0], spaced(O[1], "-")], 2),
    sql_case("sql_mixed_affinity", "", lambda: [int(C[0]), C[1], float(C[2]), O[0], int(O[1])], 3),
    sql_case("sql_output_is_input", "TEXT", lambda: [C[0]], REFUSED, extra=", output: t"),
    Case("parquet_from_pandas_index", parquet_from_pandas, 4, output=pandas_index_kept),
    parquet_case(
        "int32_key", lambda: pa.table({"nhs_number": NUMBERS, "pid": pa.array(range(7), pa.int32())}), 4, "pid"
    ),
    parquet_case("float32", lambda: pa.table({"nhs_number": NUMBERS.astype(np.float32)}), REFUSED),
    parquet_case("dictionary_int", lambda: pa.table({"nhs_number": pa.array(NUMBERS).dictionary_encode()}), 4),
    parquet_case(
        "decimal256",
        lambda: pa.table({"nhs_number": pa.array([decimal.Decimal(int(n)) for n in NUMBERS], pa.decimal256(12, 0))}),
        4,
    ),
    parquet_case("null_typed", lambda: pa.table({"nhs_number": pa.nulls(7)}), 0),
    parquet_case("bool_column", lambda: pa.table({"nhs_number": [True] * 7}), REFUSED),
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
    frames = case.frames() if case.frames else None
    if case.kept == REFUSED:
        with pytest.raises((InputError, UndeclaredNumbers)) as refused:
            run_filter(load_spec(src / "spec.yaml"), out, result, frames)
        assert not out.exists() and "t_optout" not in sql_tables(src)
        for number in NUMBERS:
            assert str(number) not in str(refused.value)
        return
    spec = load_spec(src / "spec.yaml")
    manifest = run_filter(spec, out, result, frames)
    assert manifest.tables[0].rows_out == case.kept
    if case.output is not None:
        case.output(out, src)
    if spec.tables[0].in_database:
        with sqlite3.connect(src / "db.sqlite") as conn:
            rows = conn.execute("SELECT nhs_number, note FROM t_optout").fetchall()
        assert len(rows) == case.kept
        cells = LeakScan(NumberSet(CLEARED))
        cells.batch("t", pa.table({"n": [str(r[0]) for r in rows], "note": [r[1] for r in rows]}).to_batches()[0])
        assert cells.total() == 0
    written = [path for path in out.rglob("*") if path.is_file()]
    scan = LeakScan(NumberSet(CLEARED))
    encoding = spec.tables[0].csv.encoding
    for path in written:
        scan.file("t", path, encoding) if path.suffix in {".csv", ".parquet"} else scan.raw_file("t", path)
        if not case.leaks:
            assert uncleared_in_raw(path, NumberSet(CLEARED), encoding) == 0  # the bytes, compressed or not
    assert scan.total() == case.leaks
    output = out / spec.tables[0].output_name
    if output.suffix == ".parquet" and frames is None:
        assert pq.read_schema(output).remove_metadata() == pq.read_schema(spec.tables[0].path).remove_metadata()


PG_CASES = [
    ("text_spaced", "TEXT", [spaced(C[0]), f" {C[1]} ", None, O[0], spaced(O[1], "-"), U], 2),
    ("bigint", "BIGINT", [int(n) for n in NUMBERS], 4),
    ("numeric", "NUMERIC(12, 0)", [decimal.Decimal(int(n)) for n in NUMBERS], 4),
    ("varchar_free_text", "VARCHAR(40)", [f"NHS {C[0]}", C[1], f"{O[0]} (kin)", "unknown"], 1),
]


@pytest.mark.parametrize(("column_type", "values", "kept"), [c[1:] for c in PG_CASES], ids=[c[0] for c in PG_CASES])
def test_hostile_postgres_table_is_filtered_right(
    pg_url: str, tmp_path: Path, column_type: str, values: list[object], kept: int
) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE t (nhs_number {column_type}, note TEXT)"))
        conn.execute(sa.text("INSERT INTO t VALUES (:n, 'n')"), [{"n": value} for value in values])
    (tmp_path / "spec.yaml").write_text(
        f"name: hostile\npurpose: research\ntables:\n  - {{name: t, table: t, connection: '{pg_url}', "
        "nhs_number: nhs_number}\n"
    )
    manifest = run_filter(load_spec(tmp_path / "spec.yaml"), tmp_path / "out", make_check_result(COHORT, CLEARED))
    assert manifest.tables[0].rows_out == kept
    with engine.connect() as conn:
        written = conn.execute(sa.text("SELECT CAST(nhs_number AS TEXT), note FROM t_optout")).fetchall()
    engine.dispose()
    assert len(written) == kept
    scan = LeakScan(NumberSet(CLEARED))
    scan.batch(
        "t", pa.table({"n": [str(row[0]) for row in written], "note": [row[1] for row in written]}).to_batches()[0]
    )
    assert scan.total() == 0
