"""Spark SQL expressions for the Spark engine: NHS numbers, person keys and content hashes, as SQL text.

Everything is SQL text given to ``DataFrame.selectExpr``/``where``, never ``pyspark.sql.functions``:
those pick classic or Spark Connect columns from a process-wide switch, while a DataFrame's own methods
go to the session it came from, so one code path serves classic PySpark, Spark Connect and both in one
process. No Python UDF: every row is handled in the JVM.

Numbers are normalised exactly as :mod:`optout.nhs_number` does: trim (ASCII and Unicode spaces), null
tokens and blanks as missing, drop spaces, tabs and dashes, accept ``.0`` tails, ten digits, one digit
ten times as missing, and the modulus 11 check digit by integer arithmetic. Integers outside ten digits
and fractional or non-finite floats are malformed. ``try_cast`` keeps ANSI mode from failing a run on a
stray value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optout.clearance import KEEP, Reason
from optout.errors import InputError
from optout.nhs_number import HIGHEST, LOWEST, NULL_TOKENS, PLACEHOLDER_STEP

# Helper columns the engine adds beside a table's own (dropped before anything is written).
NUMBER = "__optout_n"  # the valid NHS number, or NULL
STATUS = "__optout_s"  # 0 valid, else a reason code (missing, malformed, bad check digit)
CLEARED = "__optout_c"  # from the staged list: TRUE cleared, FALSE opted out, NULL not in the cohort
CONSENTED = "__optout_consent"  # in a staged list under consent: TRUE for a consented person the list removes
HASH = "__optout_h"  # a pseudonymised id as the staged hashes hold it (64 lowercase hex digits), or NULL
CODE = "__optout_code"  # the row's own reason code (0 = its number is valid and cleared)
KEY = "__optout_k"  # the person key in its comparable form, or NULL
BAD = "__optout_bad"  # TRUE when the row's key belongs to a person who is not cleared
KNOWN = "__optout_known"  # TRUE when the key was seen beside a number
KEYLESS = "__optout_keyless"  # TRUE when a row with a number column has no key
REASON = "__optout_reason"  # the row's final reason code (0 = keep)
TABLE = "__optout_table"  # which table of the extract a row came from (by position)
ROW_HASH = "__optout_h"  # a row's content hash

# Java regular expressions (raw SQL strings, r'...'): what Arrow's utf8_trim_whitespace trims, and
# what the file engine drops from a messy number (RE2's \s and '-').
_SPACE = r"[\s\p{Z}]"
_TRIM = rf"^{_SPACE}+|{_SPACE}+$"
_CLEAN = r"[\t\n\f\r \-]"
_TEN_DIGITS = r"^[0-9]{10}$"
_POINT_ZERO = r"^[0-9]{10}\.0+$"
_HEX_DIGEST = r"^[0-9a-f]{64}$"
_TOKENS = ", ".join("'" + token.replace("'", "\\'") + "'" for token in NULL_TOKENS)  # read as missing
_INTEGER_TYPES = ("tinyint", "smallint", "int", "bigint")
_FLOAT_TYPES = ("float", "double")


def quote(name: str) -> str:
    """A column or table name as a Spark SQL identifier (each dotted part backquoted)."""
    return ".".join("`" + part.replace("`", "``") + "`" for part in name.split("."))


def column(name: str) -> str:
    """One column name (dots are part of the name) as an identifier."""
    return "`" + name.replace("`", "``") + "`"


def _raw(pattern: str) -> str:
    return "r'" + pattern.replace("'", "\\'") + "'"


def trimmed(value: str) -> str:
    return f"regexp_replace(CAST({value} AS STRING), {_raw(_TRIM)}, '')"


_TEXT = "__optout_t"
_DIGITS = "__optout_d"
_VALUE = "__optout_v"
_MISSING = "__optout_m"
_WELL_FORMED = "__optout_w"
_PLAIN = "__optout_p"
SCRATCH = (_PLAIN, _TEXT, _DIGITS, _VALUE, _MISSING, _WELL_FORMED)


@dataclass(frozen=True)
class NumberSql:
    """How a number column becomes ``NUMBER`` (the valid number or NULL) and ``STATUS`` (0 valid, else a
    reason code): projections applied one after another, each naming what the next one uses, so that no
    expression is written twice (Spark keeps projections apart where merging would repeat costly work;
    one flat expression of a text column is 8 KB and compiles for seconds)."""

    steps: tuple[tuple[str, ...], ...]
    on: str = NUMBER  # the column joined to the staged list: the number, or (pseudonymised) the hash

    def apply(self, frame: Any) -> Any:
        """``frame`` with ``NUMBER`` and ``STATUS`` added (and scratch columns that :data:`SCRATCH` names)."""
        for step in self.steps:
            frame = frame.selectExpr("*", *step)
        return frame


def number_sql(name: str, spark_type: str, *, table: str, where: Path | None = None) -> NumberSql:
    """SQL for the number column ``name`` of Spark type ``spark_type`` (``DataFrame.dtypes`` form).

    :raises InputError: the column's type cannot hold NHS numbers (a date, a flag, binary).
    """
    value = column(name)
    if spark_type in _INTEGER_TYPES:
        first = (
            f"CAST({value} AS BIGINT) AS {_VALUE}",
            f"{value} IS NULL AS {_MISSING}",
            f"coalesce({value} BETWEEN {LOWEST} AND {HIGHEST}, FALSE) AS {_WELL_FORMED}",
        )
        return _classified((first,))
    if spark_type in _FLOAT_TYPES or spark_type.startswith("decimal"):
        real = f"CAST({value} AS DOUBLE)"
        whole = (
            f"coalesce(NOT isnan({real}) AND {real} BETWEEN {LOWEST} AND {HIGHEST} AND floor({real}) = {real}, FALSE)"
        )
        first = (
            f"CASE WHEN {whole} THEN CAST({real} AS BIGINT) END AS {_VALUE}",
            f"({value} IS NULL OR isnan({real})) AS {_MISSING}",
            f"{whole} AS {_WELL_FORMED}",
        )
        return _classified((first,))
    if spark_type not in ("string", "void") and not spark_type.startswith(("varchar", "char")):
        raise InputError(
            f"the column has type {spark_type}; NHS numbers are text or whole numbers: is this the right column?",
            path=where,
            field=f"{table}.{name}",
        )
    cleaned = f"regexp_replace({_TEXT}, {_raw(_CLEAN)}, '')"
    digits = (
        f"CASE WHEN {_PLAIN} OR {_TEXT} RLIKE {_raw(_TEN_DIGITS)} THEN {_TEXT} "
        f"WHEN {cleaned} RLIKE {_raw(_POINT_ZERO)} THEN substring({cleaned}, 1, 10) ELSE {cleaned} END"
    )
    steps = (
        (f"{plain_digits(value)} AS {_PLAIN}",),
        (f"CASE WHEN {_PLAIN} THEN {value} ELSE {trimmed(value)} END AS {_TEXT}",),
        (f"{digits} AS {_DIGITS}",),
        (
            f"try_cast({_DIGITS} AS BIGINT) AS {_VALUE}",
            f"(NOT {_PLAIN} AND ({_TEXT} IS NULL OR lower({_TEXT}) IN ({_TOKENS}))) AS {_MISSING}",
            f"({_PLAIN} OR coalesce({_DIGITS} RLIKE {_raw(_TEN_DIGITS)}, FALSE)) AS {_WELL_FORMED}",
        ),
    )
    return _classified(steps)


def hashed_sql(name: str) -> NumberSql:
    """SQL for a pseudonymised id column (:mod:`optout.pseudonym`): ``HASH``, the id as 64 lowercase hex
    digits once trimmed (either case accepted), joined to the staged hashes; ``STATUS`` 0 for such an id,
    else missing (null, blank, a null token) or malformed; and ``NUMBER``, the digest's first 8 bytes as a
    signed BIGINT, the stand-in :meth:`optout.pseudonym.PseudonymClearance.numbers` counts people by."""
    status = (
        f"CAST(CASE WHEN {_TEXT} IS NULL OR {_TEXT} IN ({_TOKENS}) THEN {Reason.MISSING.code} "
        f"WHEN {_TEXT} RLIKE {_raw(_HEX_DIGEST)} THEN {KEEP} ELSE {Reason.MALFORMED.code} END AS INT) AS {STATUS}"
    )
    return NumberSql(
        (
            (f"lower({trimmed(column(name))}) AS {_TEXT}",),
            (status,),
            (f"CASE WHEN {STATUS} = {KEEP} THEN {_TEXT} END AS {HASH}",),
            (f"CAST(conv(substring({HASH}, 1, 16), 16, -10) AS BIGINT) AS {NUMBER}",),
        ),
        on=HASH,
    )


def hash_value(digest: str) -> str:
    """A staged digest's first 14 hex digits as a BIGINT: what :func:`optout.homes.spark_session.staged_hashes`
    sums to check a staged copy."""
    return f"CAST(conv(substring({digest}, 1, 14), 16, 10) AS BIGINT)"


def plain_digits(value: str) -> str:
    """True where the text ``value`` is exactly ten ASCII digits, the first not zero: nothing in it can be
    trimmed, dropped or read as a null word, so no regular expression need look at it (most cells). Ten
    characters that parse as an integer of at least ten digits hold no sign, space or point."""
    return f"coalesce(length({value}) = 10 AND try_cast({value} AS BIGINT) >= {LOWEST}, FALSE)"


def _check_digit_ok(value: str) -> str:
    """The modulus 11 check of a ten-digit BIGINT, by integer arithmetic: the weighted sum of all ten
    digits (the check digit weighted 1) is a multiple of 11 exactly when the check digit is right."""
    weighted = " + ".join(f"({value} div {10 ** (10 - place)}) % 10 * {11 - place}" for place in range(1, 11))
    return f"({weighted}) % 11 = 0"


def _classified(steps: tuple[tuple[str, ...], ...]) -> NumberSql:
    status = (
        f"CAST(CASE WHEN {_MISSING} THEN {Reason.MISSING.code} "
        f"WHEN NOT {_WELL_FORMED} THEN {Reason.MALFORMED.code} "
        f"WHEN {_VALUE} % {PLACEHOLDER_STEP} = 0 THEN {Reason.MISSING.code} "
        f"WHEN {_check_digit_ok(_VALUE)} THEN {KEEP} ELSE {Reason.BAD_CHECK_DIGIT.code} END AS INT) AS {STATUS}"
    )
    number = f"CASE WHEN {STATUS} = {KEEP} THEN {_VALUE} END AS {NUMBER}"
    return NumberSql((*steps, (status,), (number,)))


def own_code(keeps_unusable: bool = False) -> str:
    """A row's own reason from its status and the staged list's flag (after the join on ``NUMBER``, or
    ``HASH``); with ``keeps_unusable`` (no_nhs_number_disproportionate) a number that is missing,
    malformed or fails its check digit keeps its row, as :class:`optout.clearance.Clearance` keeps it."""
    unusable = KEEP if keeps_unusable else STATUS
    return (
        f"CAST(CASE WHEN {STATUS} <> {KEEP} THEN {unusable} WHEN {CLEARED} THEN {KEEP} "
        f"WHEN {CLEARED} IS NOT NULL THEN {Reason.OPTED_OUT.code} ELSE {Reason.UNCHECKED.code} END AS INT)"
    )


def key_sql(name: str, integer: bool) -> str:
    """A person key as it is compared: integers as BIGINT, else trimmed text with blanks as NULL."""
    if integer:
        return f"CAST({column(name)} AS BIGINT)"
    text = trimmed(column(name))
    return f"CASE WHEN {text} = '' THEN NULL ELSE {text} END"


def integer_type(spark_type: str) -> bool:
    return spark_type in _INTEGER_TYPES


def row_hash_sql(columns: list[str]) -> str:
    """A row's ``xxhash64`` over all its columns, each beside its null flag: ``xxhash64`` skips NULLs, so
    a value moved from one column to another next to a NULL still changes the hash."""
    parts = [part for name in columns for part in (column(name), f"isnull({column(name)})")]
    return f"xxhash64({', '.join(parts)})" if parts else "0"


def hash_total_sql(row_hash: str) -> tuple[str, str]:
    """The exact, order-free sum of row hashes as two BIGINT sums, of each hash's high 32 bits (signed)
    and of its low 32 bits: exact up to 2^31 rows (ANSI mode fails a run beyond), and far cheaper than
    one DECIMAL(38, 0) sum. :func:`optout.homes.spark_session.digest` joins them."""
    return f"coalesce(sum(shiftright({row_hash}, 32)), 0)", f"coalesce(sum({row_hash} & 4294967295), 0)"


def content_hash_sql(columns: list[str]) -> tuple[str, str, str]:
    """Row count and the exact sum of every row's hash (:func:`row_hash_sql`, :func:`hash_total_sql`)."""
    high, low = hash_total_sql(row_hash_sql(columns))
    return "count(*) AS rows", f"{high} AS high", f"{low} AS low"


# ----------------------------------------------------------------------------------------- the leak scan

# The leak scan's rule (optout.leak_scan) in Spark SQL. A whole cell as the normaliser reads it: trimmed,
# spaces, tabs and dashes dropped, ten digits with an optional ``.0`` tail. Inside longer text: ten digits,
# or 3-3-4 with spaces or dashes, with no hexadecimal digit either side and not the digits of a decimal
# (look-arounds, so that neighbours sharing an edge are both found, as the file scan's rounds find them).
_WHOLE = r"^([0-9]{10})(?:\.0+)?$"
_IN_TEXT = (
    r"(?<![0-9A-Fa-f])(?<![0-9]\.)([0-9]{10}|[0-9]{3}[\t\n\f\r \-]{1,3}[0-9]{3}[\t\n\f\r \-]{1,3}[0-9]{4})"
    r"(?![0-9A-Fa-f])(?!\.[0-9])"
)
# Types the normaliser never reads as an NHS number (and integers too narrow to hold ten digits).
_CANNOT_HOLD = ("boolean", "date", "timestamp", "timestamp_ntz", "void", "tinyint", "smallint")
CANDIDATES = "ARRAY<STRUCT<c: INT, n: BIGINT>>"


class Unscannable(TypeError):
    """A Spark type the leak scan cannot read: the proof cannot vouch for the column."""


def leak_candidates(name: str, spark_type: str, index: int) -> tuple[str, str] | None:
    """SQL for every number-like value in one cell of column ``name``, as an ``ARRAY<STRUCT<c, n>>`` of
    (``index``, BIGINT): a whole cell read as one number, else each candidate inside its text; numbers in
    integer, floating and decimal columns; lists, structs and maps through their JSON text. With it, a
    cheap test that a cell may hold one (ten characters, a number in range), so that rows holding none are
    dropped before any array is built. None: the type cannot hold an NHS number. Validity and the cleared
    list are applied to the exploded result.

    :raises Unscannable: a type the scan does not know (fails the proof rather than passing it unread).
    """
    value = column(name)
    if spark_type in _CANNOT_HOLD or spark_type.startswith("interval"):
        return None
    if spark_type in ("int", "bigint"):
        may = f"{value} BETWEEN {LOWEST} AND {HIGHEST}"
        found = f"CASE WHEN {may} THEN array(CAST({value} AS BIGINT)) END"
    elif spark_type in _FLOAT_TYPES or spark_type.startswith("decimal"):
        real = f"CAST({value} AS DOUBLE)"
        may = f"{real} BETWEEN {LOWEST} AND {HIGHEST}"
        whole = f"NOT isnan({real}) AND {may} AND floor({real}) = {real}"
        found = f"CASE WHEN {whole} THEN array(CAST({real} AS BIGINT)) END"
    elif spark_type in ("string", "binary") or spark_type.startswith(("varchar", "char")):
        may = f"length({value}) >= 10"
        found = _text_candidates(f"CAST({value} AS STRING)")
    elif spark_type.startswith(("array", "struct", "map")):
        may = f"length(to_json({value})) >= 10"
        found = _text_candidates(f"to_json({value})")
    else:
        raise Unscannable(spark_type)
    tagged = f"coalesce(transform({found}, n -> named_struct('c', {index}, 'n', n)), CAST(array() AS {CANDIDATES}))"
    return tagged, f"coalesce({may}, FALSE)"


def _text_candidates(text: str) -> str:
    """Each cell's whole reading when it is ten digits, else every candidate inside it (cells shorter than
    ten characters hold none). Lambdas keep each regular expression to one evaluation a cell."""
    cleaned = f"regexp_replace(regexp_replace(t, {_raw(_TRIM)}, ''), {_raw(_CLEAN)}, '')"
    digits = "CAST(regexp_replace(m, '[^0-9]', '') AS BIGINT)"
    inside = f"transform(regexp_extract_all(t, {_raw(_IN_TEXT)}, 1), m -> {digits})"
    per_cell = (
        f"flatten(transform(array(regexp_extract({cleaned}, {_raw(_WHOLE)}, 1)), w -> "
        f"CASE WHEN w <> '' THEN array(CAST(w AS BIGINT)) ELSE {inside} END))"
    )
    return f"flatten(transform(array({text}), t -> CASE WHEN length(t) >= 10 THEN {per_cell} END))"


def pieces(text: str, edges: bytes) -> str:
    """One row for each piece of column ``text`` cut at any of the (ASCII) ``edges``."""
    cut = "".join(f"\\x{{{byte:02x}}}" for byte in edges)
    return f"explode(split({column(text)}, {_raw(f'[{cut}]')}))"


def valid_number(value: str) -> str:
    """True where a BIGINT is a valid NHS number (:func:`optout.nhs_number.is_valid_number`'s rule)."""
    return f"({value} > 0 AND {value} <= {HIGHEST} AND {value} % {PLACEHOLDER_STEP} <> 0 AND {_check_digit_ok(value)})"
