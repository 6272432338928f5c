"""CSV dialects in the Spark engine, on a real Spark Connect server: a semicolon-separated cp1252 extract
gives the file engine's counts and people removed, its output keeps the dialect byte for byte and is
proved in it; a file Spark would misread (ragged rows, a quote inside an unquoted field, bytes that are
not UTF-8) is refused with one line naming the file, never a value."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyarrow as pa
import pytest

from optout.errors import InputError
from optout.filter import run_filter
from optout.homes.files.formats import Format
from optout.homes.spark_session import output_parts
from optout.spec import load_spec
from tests.integration.test_spark_engine import _spark_spec, both_engines
from tests.unit.filter_data import N, check_result, spaced, write_extract

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


def _rewritten(folder: Path, name: str, delimiter: str, encoding: str, eol: str, bom: bytes = b"") -> str:
    """Rewrite one CSV table of the shared extract in another dialect; return its spec lines."""
    with (folder / name).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    text = io.StringIO(newline="")
    csv.writer(text, delimiter=delimiter, lineterminator=eol).writerows(rows)
    (folder / name).write_bytes(bom + text.getvalue().encode(encoding))
    shown = "tab" if delimiter == "\t" else delimiter
    return f'    path: {name}\n    csv: {{delimiter: "{shown}", encoding: {encoding}}}\n'


def test_bom_line_endings_and_utf16_match_the_file_engine(spark_connect_url: str, tmp_path: Path) -> None:
    """A pipe-separated UTF-8 file with a BOM and CRLF line ends, and a tab-separated UTF-16LE file without
    a BOM and lone CR line ends: the file engine's counts, and the outputs written in the same dialects."""
    folder = tmp_path / "in"
    spec = write_extract(folder)
    text = spec.read_text()
    for name, dialect in {
        "patients.csv": ("|", "utf-8-sig", "\r\n", b""),
        "notes.csv": ("\t", "utf-16-le", "\r", b""),
    }.items():
        text = text.replace(f"    path: {name}\n", _rewritten(folder, name, *dialect))
    spec.write_text(text)
    assert (folder / "patients.csv").read_bytes().startswith(b"\xef\xbb\xbfpid|")  # utf-8-sig writes a BOM
    both_engines(spec, tmp_path, spark_connect_url)
    notes = tmp_path / "spark" / "notes.csv"
    assert b"".join(p.read_bytes() for p in sorted(notes.glob("part-*"))).startswith("pid\t".encode("utf-16-le"))
    table = pa.Table.from_batches(list(output_parts(notes, Format.CSV, None)))
    assert sorted(table.column("pid").to_pylist()) == ["p1", "p9"]
    patients = pa.Table.from_batches(list(output_parts(tmp_path / "spark" / "patients.csv", Format.CSV, None)))
    assert spaced(int(N[0])) in patients.column("nhs_number").to_pylist()  # written as read, spaces kept


@pytest.mark.parametrize(
    "content",
    [
        b"pid;nhs_number;note\np1;%s;ok\np2;%s\n",
        b"pid;nhs_number;note\np1;%s;ok\np2;%s;ok;extra\n",
        b'pid;nhs_number;note\np1;%s;said "x" y\np2;%s;ok\n',
        b'pid;nhs_number;note\np1;%s;"ab"c\np2;%s;ok\n',
        b'pid;nhs_number;note\np1;%s;x""y\np2;%s;"a ""b"" c"\n',
        b'pid;nhs_number;note\np1;%s;"open\np2;%s;ok\n',
        b"pid;nhs_number;note\np1;%s;caf\xe9\np2;%s;ok\n",
        b"pid;nhs_number;nhs_number\np1;%s;x\np2;%s;ok\n",
    ],
    ids=[
        "short-row",
        "long-row",
        "quote-in-field",
        "text-after-quote",
        "doubled-quote-unquoted",
        "open-quote",
        "not-utf8",
        "header-twice",
    ],
)
def test_a_csv_spark_would_misread_is_refused_as_the_file_engine_refuses_it(
    spark_connect_url: str, tmp_path: Path, content: bytes
) -> None:
    """The same one-line error as the file engine's, naming the file, line and column, never a value."""
    folder = tmp_path / "in"
    spec_path = write_extract(folder)
    numbers = (str(N[6]).encode(), str(N[7]).encode())
    (folder / "patients.csv").write_bytes(content % numbers)
    spec_path.write_text(
        spec_path.read_text().replace("    path: patients.csv\n", '    path: patients.csv\n    csv: {delimiter: ";"}\n')
    )
    with pytest.raises(InputError) as by_files:
        run_filter(load_spec(spec_path), tmp_path / "files", check_result())
    spark_spec = _spark_spec(spec_path, connection=spark_connect_url)
    with pytest.raises(InputError) as in_spark:
        run_filter(load_spec(spark_spec), tmp_path / "spark", check_result())
    text = str(in_spark.value)
    assert text == str(by_files.value) and in_spark.value.exit_code == 2
    assert "patients.csv" in text and "line " in text and "\n" not in text
    assert all(number.decode() not in text for number in numbers) and "caf" not in text
    assert not (tmp_path / "spark").exists()


def test_mixed_line_endings_are_refused_by_the_spark_engine_only(spark_connect_url: str, tmp_path: Path) -> None:
    """Spark's reader takes the first line ending for the whole file: a later CRLF row would keep its CR in
    its last value. The file engine reads such a file; the Spark engine refuses it, naming the line."""
    folder = tmp_path / "in"
    spec_path = write_extract(folder)
    (folder / "notes.csv").write_bytes(b"pid,text\np1,a\r\np3,b\n")
    run_filter(load_spec(spec_path), tmp_path / "files", check_result())
    with pytest.raises(InputError, match="ends differently from the header") as raised:
        run_filter(load_spec(_spark_spec(spec_path, connection=spark_connect_url)), tmp_path / "out", check_result())
    assert "notes.csv" in str(raised.value) and "line 2" in str(raised.value)
    assert not (tmp_path / "out").exists()
