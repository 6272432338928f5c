"""CSV in the Spark engine: a path input read, and its output written, in the spec's declared dialect
(:class:`~optout.homes.files.csv_dialect.CsvDialect`), and a file Spark would misread refused first.

Spark's CSV reader is told the delimiter, quote, encoding and header, and ``mode=FAILFAST``: left to
itself it reads a row with too few fields as nulls and drops extra fields, so a shifted number could pass
unseen. FAILFAST fails the read instead, which :func:`check_input` turns into a one-line :class:`InputError`
naming the file (exit 2), never Spark's message, which quotes the row. Spark reads a quote inside an
unquoted field (``x"y``, ``"ab"cd``) as a literal character where RFC 4180, and the file engine, refuse
it; :func:`check_input` refuses such a file too, from its lines of text, in Spark. Spark also reads a
byte that is not UTF-8 as U+FFFD where the file engine refuses it: so does the check (``is_valid_utf8``).

Spark 4 accepts only Java's standard charsets. ``cp1252`` is read and written as ISO-8859-1: every byte
is one character either way and the delimiters, quote and digits are the same ASCII bytes, so the file
is split and scanned alike and written back byte for byte (a character in 0x80-0x9F reads as a C1 control
instead of, say, a euro sign). UTF-16 is refused: the proof's raw-text scan reads a CSV output's lines as
UTF-8 (:func:`optout.homes.spark_proof._raw_leaks`).

An output folder records its dialect in ``_optout_csv.json`` (Spark ignores files beginning ``_``), so
that it is read back, hashed before sending and proved in the dialect it was written in, with no spec.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from optout.errors import InputError
from optout.homes import spark_sql as q
from optout.homes.files.csv_dialect import DEFAULT, DELIMITERS, QUOTE, CsvDialect

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from optout.spec import TableSpec

MARKER = "_optout_csv.json"
# The spec's encodings as Spark (Java) names them; see the module's note on cp1252.
SPARK_ENCODINGS = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "cp1252": "ISO-8859-1", "latin-1": "ISO-8859-1"}


def spark_encoding(dialect: CsvDialect, path: str | Path | None = None) -> str:
    """The Java charset Spark reads and writes ``dialect``'s files in."""
    encoding = SPARK_ENCODINGS.get(dialect.encoding)
    if encoding is None:
        raise InputError(
            f"the Spark engine does not read {dialect.encoding} CSV files; use utf-8, cp1252 or latin-1, "
            "or the file engine",
            path=path,
            field="csv.encoding",
        )
    return encoding


def options(dialect: CsvDialect, path: str | Path | None = None) -> dict[str, str]:
    """Spark's CSV options for ``dialect``: every column as text, quoted newlines and doubled quotes allowed,
    a malformed row an error."""
    return {
        "header": "true",
        "sep": dialect.delimiter,
        "quote": dialect.quote,
        "escape": dialect.quote,
        "encoding": spark_encoding(dialect, path),
        "multiLine": "true",
        "inferSchema": "false",
        "mode": "FAILFAST",
    }


def read_csv(spark: SparkSession, path: str, dialect: CsvDialect = DEFAULT) -> DataFrame:
    return spark.read.options(**options(dialect, path)).csv(path)


def write_csv(frame: DataFrame, folder: Path, dialect: CsvDialect) -> None:
    """Write ``frame`` as a folder of CSV parts in ``dialect``, and record the dialect in the folder."""
    written = {key: value for key, value in options(dialect, folder).items() if key in ("sep", "quote", "escape")}
    frame.write.mode("error").options(header=True, encoding=spark_encoding(dialect), **written).csv(str(folder))
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
    """What a failed Spark read raises: a PySpark error (Spark Connect), or py4j's (a classic session)."""
    from pyspark.errors import PySparkException

    try:
        from py4j.protocol import Py4JError
    except ImportError:  # a Spark Connect client alone
        return (PySparkException,)
    return (PySparkException, Py4JError)


def check_input(spark: SparkSession, table: TableSpec) -> None:
    """Refuse a CSV input Spark would misread: rows that do not parse in the declared dialect (FAILFAST),
    a quote inside an unquoted field, or (UTF-8) bytes that are not UTF-8. Two jobs over the file, counts
    only; the error names the file, never a row."""
    assert table.path is not None
    path, dialect = str(table.path), table.csv
    try:
        read_csv(spark, path, dialect).count()  # FAILFAST parses every row even for a count
    except read_errors():
        raise InputError(
            f"Spark cannot read this CSV file in its declared dialect (delimiter {dialect.delimiter!r}, "
            f"{dialect.encoding}): a row has more or fewer fields than the header, or a quote is left open",
            path=table.path,
        ) from None
    counts = spark.read.text(path).selectExpr(
        f"count_if({q.quote_inside_field('value', dialect.delimiter)})", "count_if(NOT is_valid_utf8(value))"
    )
    quotes, not_utf8 = counts.collect()[0]
    if quotes:
        raise InputError(
            f"{int(quotes)} line(s) hold a quote inside a field that is not quoted as a whole (RFC 4180: quote "
            "the whole field and double the quotes within it)",
            path=table.path,
        )
    if not_utf8 and dialect.utf8:
        raise InputError(
            f"{int(not_utf8)} line(s) are not UTF-8 text; declare the file's encoding (csv: {{encoding: cp1252}})",
            path=table.path,
        )
