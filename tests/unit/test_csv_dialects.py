"""CSV dialects declared in the spec: read strictly, written back as they came, and proved clean; pandas
outputs keep their index. The proof must pass on every clean output the filter writes."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from filter_data import make_check_result

from optout.errors import InputError
from optout.filter import run_filter
from optout.homes.files.csv_dialect import DEFAULT, CsvDialect
from optout.homes.files.csv_io import CsvWriter, csv_batches
from optout.nhs_number import synthetic
from optout.spec import load_spec
from optout.validation import run_validation

NUMBERS = synthetic(6)
CLEARED = NUMBERS[:4]
NOW = datetime.now(UTC)


def rows(delimiter: str, eol: str) -> str:
    lines = [f"nhs_number{delimiter}note"] + [
        f'{n}{delimiter}"caf\xe9{delimiter} \u2019{i}"' if i % 2 else f"{n}{delimiter}plain"
        for i, n in enumerate(NUMBERS)
    ]
    return eol.join(lines) + eol


@pytest.mark.parametrize(
    ("declared", "data"),
    [
        ("{encoding: cp1252}", rows(",", "\r\n").encode("cp1252")),
        ("{encoding: utf-16, delimiter: tab}", rows("\t", "\r\n").encode("utf-16")),
        ("{delimiter: ';'}", b"\xef\xbb\xbf" + rows(";", "\n").encode()),
        ("{encoding: latin-1, delimiter: '|'}", rows("|", "\r").replace("\u2019", "'").encode("latin-1")),
    ],
    ids=["cp1252_crlf", "utf16_tab", "utf8_bom_semicolon", "latin1_cr"],
)
def test_a_declared_dialect_is_filtered_kept_and_proved(tmp_path: Path, declared: str, data: bytes) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "t.csv").write_bytes(data)
    (src / "spec.yaml").write_text(
        f"name: d\npurpose: research\ntables:\n  - {{name: t, path: t.csv, nhs_number: nhs_number, csv: {declared}}}\n"
    )
    spec = load_spec(src / "spec.yaml")
    result = make_check_result(NUMBERS, CLEARED, version=3, checked_at=NOW)
    manifest = run_filter(spec, tmp_path / "out", result)
    assert manifest.tables[0].rows_out == 4
    written = (tmp_path / "out" / "t.csv").read_bytes()
    # byte for byte the input's first five lines: BOM, encoding, delimiter, line endings and quoting kept
    encoding = spec.tables[0].csv.encoding
    eol = "\r\n" if b"\r\n" in data or "\r\n".encode(encoding)[-2:] in data else "\r" if b"\r" in data else "\n"
    text = data.decode("utf-8-sig" if encoding == "utf-8" else encoding)
    assert written.decode("utf-8-sig" if encoding == "utf-8" else encoding) == eol.join(text.split(eol)[:5]) + eol
    assert written.startswith(b"\xef\xbb\xbf") == data.startswith(b"\xef\xbb\xbf")
    assert run_validation(spec, tmp_path / "out", result, current=result.info, now=NOW).ok


def test_a_dataframe_keeps_its_index_and_the_proof_passes(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "spec.yaml").write_text(
        "name: f\npurpose: research\ntables:\n  - {name: t, path: t.parquet, nhs_number: nhs_number}\n"
    )
    frame = pd.DataFrame(
        {"nhs_number": NUMBERS, "code": pd.Categorical([f"c{i % 4}" for i in range(6)])},
        index=pd.Index([f"row{i}" for i in range(6)], name="row"),
    )
    spec = load_spec(tmp_path / "src" / "spec.yaml")
    result = make_check_result(NUMBERS, CLEARED, version=3, checked_at=NOW)
    run_filter(spec, tmp_path / "out", result, {"t": frame})
    written = pd.read_parquet(tmp_path / "out" / "t.parquet")
    pd.testing.assert_frame_equal(
        written, frame.iloc[:4].assign(code=frame["code"].iloc[:4].cat.remove_unused_categories())
    )
    assert run_validation(spec, tmp_path / "out", result, current=result.info, now=NOW).ok


def test_a_parquet_pandas_wrote_keeps_its_metadata_and_index_and_proves(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    frame = pd.DataFrame({"nhs_number": NUMBERS}, index=pd.Index([f"r{i}" for i in range(6)], name="row"))
    frame.to_parquet(src / "t.parquet")
    (src / "spec.yaml").write_text(
        "name: p\npurpose: research\ntables:\n  - {name: t, path: t.parquet, nhs_number: nhs_number}\n"
    )
    spec = load_spec(src / "spec.yaml")
    result = make_check_result(NUMBERS, CLEARED, version=3, checked_at=NOW)
    run_filter(spec, tmp_path / "out", result)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / "t.parquet"), frame.iloc[:4])
    assert run_validation(spec, tmp_path / "out", result, current=result.info, now=NOW).ok


@pytest.mark.parametrize(
    ("csv", "field"),
    [
        ("{delimiter: ':'}", "tables[0].csv.delimiter"),
        ('{quote: "\'"}', "tables[0].csv.quote"),
        ("{encoding: ebcdic}", "tables[0].csv.encoding"),
        ("{header: false}", "tables[0].csv.header"),
        ("{sep: ','}", "tables[0].csv.sep"),
        ("utf-8", "tables[0].csv"),
    ],
)
def test_a_bad_csv_dialect_is_refused_naming_its_key(tmp_path: Path, csv: str, field: str) -> None:
    (tmp_path / "spec.yaml").write_text(
        f"name: d\npurpose: research\ntables:\n  - {{name: t, path: t.csv, nhs_number: n, csv: {csv}}}\n"
    )
    with pytest.raises(InputError) as refused:
        load_spec(tmp_path / "spec.yaml")
    assert refused.value.field == field


def test_a_dialect_on_a_parquet_table_is_refused(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(
        "name: d\npurpose: research\ntables:\n  - {name: t, path: t.parquet, nhs_number: n, csv: {delimiter: ';'}}\n"
    )
    with pytest.raises(InputError, match=r"describes a \.csv file"):
        load_spec(tmp_path / "spec.yaml")


@pytest.mark.parametrize(
    ("declared", "data"),
    [
        (DEFAULT, b'"a","b"\r\n"1","x ""y"", z"\r\n"2",""\r\n'),
        (CsvDialect(delimiter=";", encoding="cp1252"), '"a";"b"\n"1";"caf\xe9; ""q"""\n'.encode("cp1252")),
        (CsvDialect(delimiter="\t", encoding="utf-16"), '"a"\t"b"\r\n"1"\t"x"\r\n'.encode("utf-16")),
        (DEFAULT, b"a,b\r\n1,x\r\n2,\r\n"),
        (DEFAULT, b'a,b\n1,x\n2,"y,z"\n3,"q""r"\n4,"s\nt"\n'),
        (DEFAULT, b'a,"b"\n1,"x"\n"2,5","y"""\n'),
        (CsvDialect(quote="'"), b"'a','b'\n'1','x''y'\n"),
    ],
    ids=["all_quoted", "all_quoted_cp1252", "all_quoted_utf16", "none_quoted", "quoted_where_needed", "mixed", "quote"],
)
def test_the_writer_writes_each_quoting_back_byte_for_byte(tmp_path: Path, declared: CsvDialect, data: bytes) -> None:
    """Arrow's writer writes a batch quoted throughout or nowhere; the join writes the rest, alike."""
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    sink = io.BytesIO()
    batches = list(csv_batches(path, None, 1 << 20, declared))
    writer = CsvWriter(sink, batches[0].schema, path, declared)
    for batch in batches:
        writer.write_batch(batch)
    assert sink.getvalue() == data
