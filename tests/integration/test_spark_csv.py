"""CSV dialects in the Spark engine, on a real Spark Connect server: a semicolon-separated cp1252 extract
gives the file engine's counts and people removed, its output keeps the dialect byte for byte and is
proved in it; a file Spark would misread (ragged rows, a quote inside an unquoted field, bytes that are
not UTF-8) is refused with one line naming the file, never a value."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pytest

from optout.errors import InputError
from optout.filter import run_filter
from optout.homes.files.formats import Format
from optout.homes.spark_session import output_parts
from optout.spec import load_spec
from tests.integration.test_spark_engine import _spark_spec, both_engines
from tests.unit.filter_data import N, check_result, write_extract

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DIALECT = '    csv: {delimiter: ";", encoding: cp1252}\n'


def _semicolon_cp1252(folder: Path) -> Path:
    """The shared extract with both CSV tables rewritten with semicolons in cp1252 (a euro sign, an accent,
    a semicolon inside a quoted field), declared in the spec."""
    spec = write_extract(folder)
    for name in ("patients.csv", "notes.csv"):
        with (folder / name).open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        rows[1][-1] += " café €5; paid"
        with (folder / name).open("w", newline="", encoding="cp1252") as handle:
            csv.writer(handle, delimiter=";", lineterminator="\n").writerows(rows)
    text = spec.read_text()
    for name in ("patients.csv", "notes.csv"):
        text = text.replace(f"    path: {name}\n", f"    path: {name}\n{DIALECT}")
    spec.write_text(text)
    return spec


def test_a_semicolon_cp1252_extract_matches_the_file_engine(spark_connect_url: str, tmp_path: Path) -> None:
    _, manifest = both_engines(_semicolon_cp1252(tmp_path / "in"), tmp_path, spark_connect_url)
    assert sum(manifest.people_removed.values())  # people removed: equal in both (their counts compared)
    folder = tmp_path / "spark" / "patients.csv"
    written = b"".join(part.read_bytes() for part in sorted(folder.glob("part-*")))
    assert written.startswith(b"pid;nhs_number;note\n") and " café €5; paid".encode("cp1252") in written
    table = pa.Table.from_batches(list(output_parts(folder, Format.CSV, None)))
    assert table.column_names == ["pid", "nhs_number", "note"] and str(N[6]) not in table.column("nhs_number")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"pid;nhs_number;note\np1;%s;ok\np2;%s\n", "more or fewer fields"),
        (b"pid;nhs_number;note\np1;%s;ok\np2;%s;ok;extra\n", "more or fewer fields"),
        (b'pid;nhs_number;note\np1;%s;said "x" y\np2;%s;ok\n', "quote inside a field"),
        (b'pid;nhs_number;note\np1;%s;"ab"c\np2;%s;ok\n', "quote inside a field"),
        (b"pid;nhs_number;note\np1;%s;caf\xe9\np2;%s;ok\n", "not UTF-8"),
    ],
    ids=["short-row", "long-row", "quote-in-field", "text-after-quote", "not-utf8"],
)
def test_a_csv_spark_would_misread_is_refused(
    spark_connect_url: str, tmp_path: Path, content: bytes, message: str
) -> None:
    folder = tmp_path / "in"
    spec_path = write_extract(folder)
    numbers = (str(N[6]).encode(), str(N[7]).encode())
    (folder / "patients.csv").write_bytes(content % numbers)
    spec_path.write_text(
        spec_path.read_text().replace("    path: patients.csv\n", '    path: patients.csv\n    csv: {delimiter: ";"}\n')
    )
    spark_spec = _spark_spec(spec_path, connection=spark_connect_url)
    with pytest.raises(InputError, match=message) as raised:
        run_filter(load_spec(spark_spec), tmp_path / "spark", check_result())
    text = str(raised.value)
    assert raised.value.exit_code == 2 and "patients.csv" in text and "\n" not in text
    assert all(number.decode() not in text for number in numbers) and "caf" not in text
    assert not (tmp_path / "spark").exists()


def test_utf16_is_refused_by_the_spark_engine(spark_connect_url: str, tmp_path: Path) -> None:
    spec_path = write_extract(tmp_path / "in")
    text = spec_path.read_text().replace("    path: notes.csv\n", "    path: notes.csv\n    csv: {encoding: utf-16}\n")
    spec_path.write_text(text)
    with pytest.raises(InputError, match="does not read utf-16"):
        run_filter(load_spec(_spark_spec(spec_path, connection=spark_connect_url)), tmp_path / "out", check_result())
