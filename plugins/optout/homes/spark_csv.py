"""CSV in the Spark engine: a path input read, and its output written, in the spec's declared dialect
(:class:`~optout.homes.files.csv_dialect.CsvDialect`), and a file Spark would misread refused first.

Spark's CSV reader is told the delimiter, quote, encoding and header, and ``mode=FAILFAST``: left to
itself it reads a row with too few fields as nulls and drops extra fields, so a shifted number could pass
unseen. It also reads a quote inside an unquoted field (``x"y``, ``x""y``, ``"ab"cd``) as text where RFC
4180, and the file engine, refuse it, and a byte that is not UTF-8 as U+FFFD. It takes the first line
ending for the whole file (a later CRLF row keeps its CR in its last value, a later LF row fails), where
the file engine reads LF, CRLF and CR mixed. So :func:`check_input` first runs the file engine's own
checks on each file (its header, every quote, every byte: :func:`optout.homes.files.csv_io.csv_header`,
:func:`optout.homes.files.csv_strict.check_csv`), which refuse with the file engine's words, naming the
file, line and column, never a value, and refuses mixed line endings (naming the line); then Spark's
FAILFAST count, whose failure is reported as the file engine's exact scan finds it
(:func:`optout.homes.files.csv_io.csv_error`), never in Spark's words (they quote the row). A path input is
a file this machine sees, as the engine's output folders are.

Encodings: Spark 4 accepts only Java's standard charsets. ``cp1252`` is read and written as ISO-8859-1:
every byte is one character either way and the delimiters, quote and digits are the same ASCII bytes, so
the file is split and scanned alike and written back byte for byte (a character in 0x80-0x9F reads as a
C1 control instead of, say, a euro sign). UTF-16 is read as Java's ``UTF-16`` (byte order from the BOM,
which the file engine's check requires) or ``UTF-16LE``/``UTF-16BE`` (a BOM there is skipped too); an
output is written in the same charset, and the proof scans its text decoded
(:func:`optout.homes.spark_proof._raw_leaks`).

An output folder records its dialect in ``_optout_csv.json`` (Spark ignores files beginning ``_``), so
that it is read back, hashed before sending and proved in the dialect it was written in, with no spec.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from optout.errors import InputError
from optout.homes.files.csv_dialect import DEFAULT, DELIMITERS, QUOTE, CsvDialect
from optout.homes.files.csv_io import csv_error, csv_header
from optout.homes.files.csv_strict import check_csv, other_line_end

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from optout.spec import TableSpec

MARKER = "_optout_csv.json"
# The spec's encodings as Spark (Java) names them; see the module's note on cp1252.
SPARK_ENCODINGS = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8",
    "cp1252": "ISO-8859-1",
    "latin-1": "ISO-8859-1",
    "utf-16": "UTF-16",
    "utf-16-le": "UTF-16LE",
    "utf-16-be": "UTF-16BE",
}


def spark_encoding(dialect: CsvDialect) -> str:
    """The Java charset Spark reads and writes ``dialect``'s files in."""
    return SPARK_ENCODINGS[dialect.encoding]


def options(dialect: CsvDialect) -> dict[str, str]:
    """Spark's CSV options for ``dialect``: every column as text, quoted newlines and doubled quotes allowed,
    a malformed row an error."""
    return {
        "header": "true",
        "sep": dialect.delimiter,
        "quote": dialect.quote,
        "escape": dialect.quote,
        "encoding": spark_encoding(dialect),
        "multiLine": "true",
        "inferSchema": "false",
        "mode": "FAILFAST",
    }


def read_csv(spark: SparkSession, path: str, dialect: CsvDialect = DEFAULT) -> DataFrame:
    return spark.read.options(**options(dialect)).csv(path)


def write_csv(frame: DataFrame, folder: Path, dialect: CsvDialect) -> None:
    """Write ``frame`` as a folder of CSV parts in ``dialect``, and record the dialect in the folder. Values
    are written as read: Spark's writer would otherwise trim their leading and trailing spaces."""
    written = {key: value for key, value in options(dialect).items() if key in ("sep", "quote", "escape", "encoding")}
    kept = {"ignoreLeadingWhiteSpace": "false", "ignoreTrailingWhiteSpace": "false"}
    frame.write.mode("error").options(header=True, **written, **kept).csv(str(folder))
    (folder / MARKER).write_text(json.dumps({"delimiter": dialect.delimiter, "encoding": dialect.encoding}))


def folder_dialect(folder: Path) -> CsvDialect:
    """The dialect an output folder was written in (RFC 4180 in UTF-8 when it records none)."""
    marker = folder / MARKER
    if not marker.is_file():
        return DEFAULT
    try:
        found = json.loads(marker.read_text())
        dialect = CsvDialect(str(found["delimiter"]), QUOTE, str(found["encoding"]))
        if dialect.delimiter not in DELIMITERS.values() or dialect.encoding not in SPARK_ENCODINGS:
            raise ValueError(MARKER)
        return dialect
    except (ValueError, KeyError, TypeError):
        raise InputError("the output's CSV dialect record is damaged", path=marker) from None


def read_errors() -> tuple[type[BaseException], ...]:
    """What a failed Spark call raises: a PySpark error (Spark Connect, and the JVM errors a classic session
    knows), or py4j's (a classic session: a Java error it does not convert, or the JVM gone)."""
    from pyspark.errors import PySparkException

    try:
        from py4j.protocol import Py4JError
    except ImportError:  # a Spark Connect client alone
        return (PySparkException,)
    return (PySparkException, Py4JError)


def check_input(spark: SparkSession, table: TableSpec) -> None:
    """Refuse a CSV input Spark would misread, as the file engine refuses it: each file's header, quotes
    and (UTF-8) bytes checked by the file engine's checks, then Spark's FAILFAST count (rows that do not
    parse in the declared dialect). The error names the file, line and column, never a value; a Spark
    failure with no bad row behind it is raised as it is (call this inside
    :func:`optout.homes.spark_session.spark_errors`)."""
    assert table.path is not None
    files = data_files(table.path)
    if not files:
        raise InputError("the folder holds no CSV file", path=table.path)
    for file in files:
        csv_header(file, table.csv)
        check_csv(file, table.csv)
        line = other_line_end(file, table.csv)
        if line is not None:
            raise InputError(
                "this line ends differently from the header (LF, CRLF or CR): Spark reads one line ending per "
                "file; make them the same, or use the file engine",
                path=file,
                line=line,
            )
    try:
        read_csv(spark, str(table.path), table.csv).count()  # FAILFAST parses every row even for a count
    except read_errors():
        bad = files[0] if len(files) == 1 else next((f for f in files if not _parses(spark, f, table.csv)), files[0])
        error = csv_error(bad, table.csv)
        if error.line is None:  # the file engine finds no bad row: Spark failed for its own reasons (the caller
            raise  # turns that into a SparkEngineError naming its class)
        raise error from None


def _parses(spark: SparkSession, file: Path, dialect: CsvDialect) -> bool:
    """Whether Spark's FAILFAST reader takes one file of a folder (errors only: which file to name)."""
    try:
        read_csv(spark, str(file), dialect).count()
    except read_errors():
        return False
    return True


def data_files(path: Path) -> list[Path]:
    """The files Spark reads for ``path``: the file, or a folder's files not starting with ``_`` or ``.``."""
    if not path.is_dir():
        return [path]
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(("_", ".")))
