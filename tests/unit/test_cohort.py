"""Reading the cohort from CSV and Parquet files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from optout import ndop
from optout.cohort import read_cohort
from optout.errors import InputError

CANDIDATES = np.arange(4_000_000_000, 4_000_000_200, dtype=np.int64)
VALID = CANDIDATES[ndop.is_valid_number(CANDIDATES)].tolist()
BAD_CHECK = next(n for n in CANDIDATES.tolist() if n not in VALID and n + 1 in VALID)


def write_csv(path: Path, column: str, values: list[str]) -> Path:
    path.write_text(f"person,{column}\n" + "".join(f"p{i},{v}\n" for i, v in enumerate(values)), encoding="utf-8")
    return path


def test_csv_and_parquet_make_one_sorted_unique_cohort_and_count_what_was_dropped(tmp_path: Path) -> None:
    a, b, c = VALID[:3]
    text = f"{a}".replace("", " ").strip()  # spaces between digits
    csv_values = [f"{b}", f'"{text}"', "", "null", f"{BAD_CHECK}", "12345", f"{c:010d}", f"{b}"]
    csv_path = write_csv(tmp_path / "people.csv", "nhs_number", csv_values)
    parquet_path = tmp_path / "more.parquet"
    pq.write_table(pa.table({"nhs_number": pa.array([VALID[3], None, a, VALID[4]], pa.int64())}), parquet_path)

    cohort = read_cohort([csv_path, parquet_path], "nhs_number")

    assert cohort.numbers.dtype == np.int64
    assert cohort.numbers.tolist() == sorted({a, b, c, VALID[3], VALID[4]})
    assert cohort.counts == {
        "rows": 12,
        "valid": 7,
        "missing": 3,
        "malformed": 1,
        "bad_check_digit": 1,
        "duplicates": 2,
    }


def test_one_path_and_leading_zeros(tmp_path: Path) -> None:
    candidates = np.arange(12_345_670, 12_345_700, dtype=np.int64)
    number = int(candidates[ndop.is_valid_number(candidates)][0])
    cohort = read_cohort(write_csv(tmp_path / "one.csv", "nhs", [f"{number:010d}"]), "nhs")
    assert cohort.numbers.tolist() == [number]


def test_a_file_without_the_column_names_file_and_field(tmp_path: Path) -> None:
    good = write_csv(tmp_path / "good.csv", "nhs_number", [str(VALID[0])])
    other = write_csv(tmp_path / "other.csv", "NHS No", [str(VALID[1])])
    with pytest.raises(InputError) as caught:
        read_cohort([good, other], "nhs_number")
    assert caught.value.path == str(other)
    assert caught.value.field == "nhs_number"
    assert str(VALID[1]) not in str(caught.value)


def test_unknown_format_and_no_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\.csv or \.parquet"):
        read_cohort([tmp_path / "people.xlsx"], "nhs_number")
    with pytest.raises(InputError, match="no cohort file"):
        read_cohort([], "nhs_number")


def test_an_empty_file_is_an_empty_cohort(tmp_path: Path) -> None:
    cohort = read_cohort(write_csv(tmp_path / "empty.csv", "nhs_number", []), "nhs_number")
    assert cohort.numbers.tolist() == []
    assert cohort.counts["rows"] == 0


def test_a_query_and_files_make_one_cohort(tmp_path: Path) -> None:
    import sqlite3

    from optout.cohort import combine, read_sql_cohort
    from optout.nhs_number import synthetic

    numbers = synthetic(5)
    db = tmp_path / "cohort.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table people (nhs text)")
        conn.executemany("insert into people values (?)", [(str(n),) for n in numbers[:3]] + [("junk",), (None,)])
    queried = read_sql_cohort(f"sqlite:///{db}", "select nhs from people", batch_rows=2)
    assert queried.numbers.tolist() == numbers[:3].tolist()
    expected = {"rows": 5, "valid": 3, "missing": 1, "malformed": 1, "bad_check_digit": 0, "duplicates": 0}
    assert queried.counts == expected
    (tmp_path / "more.csv").write_text("nhs\n" + "".join(f"{n}\n" for n in numbers[2:]))
    both = combine([queried, read_cohort(tmp_path / "more.csv", "nhs")])
    assert both.numbers.tolist() == numbers.tolist()
    assert both.counts["duplicates"] == 1 and both.counts["rows"] == 8
