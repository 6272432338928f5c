"""The NHS number classification in SQL, exactly as :mod:`optout.nhs_number` does it in Arrow.

Trim, drop spaces, tabs and dashes, accept ``.0`` tails, ten digits, placeholders (one digit ten times)
as missing, the modulus 11 check digit from the digits' arithmetic. Only the cheap join key is computed
for every row; the full classification runs only for rows that are not cleared. Portable SQLAlchemy
Core; the few spellings that differ between databases come from the run's
:class:`~optout.homes.sql.dialect.Dialect`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from optout.clearance import Reason
from optout.nhs_number import HIGHEST, LOWEST, NULL_TOKENS, PLACEHOLDER_STEP
from optout.pseudonym import HEX_CHARS

if TYPE_CHECKING:
    from optout.homes.sql.dialect import Dialect

# What Arrow's utf8_trim_whitespace trims (ASCII and the common Unicode spaces); RE2's \s plus '-' inside.
TRIM = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(
    chr(code) for code in range(0x2000, 0x200B)
)
_CLEAN = ("\t", "\n", "\x0c", "\r", " ", "-")
_DIGITS = "0123456789"
_HEX = "0123456789abcdef"
_FIELD_SEP = "\x1f"
_NULL_TEXT = "\\N"


class Kind(StrEnum):
    """How a number column is read: integers and floats by value, everything else as text."""

    INTEGER = "integer"
    FLOAT = "float"
    TEXT = "text"

    @classmethod
    def of(cls, sql_type: sa.types.TypeEngine[Any] | None) -> Kind:
        if isinstance(sql_type, sa.Integer):
            return cls.INTEGER
        if isinstance(sql_type, sa.Float | sa.Numeric):
            return cls.FLOAT
        return cls.TEXT


def strip(value: sa.ColumnElement[str], characters: Sequence[str]) -> sa.ColumnElement[str]:
    for character in characters:
        value = sa.func.replace(value, character, "")
    return value


@dataclass(frozen=True)
class NumberColumn:
    """SQL for one NHS number column: the join key every row computes, the reason only some need."""

    key: sa.ColumnElement[Any]  # the number (or hash text) to look up in the staged sets; NULL if unusable
    reason: sa.ColumnElement[int]  # reason code for a row that is in neither staged set

    @classmethod
    def plain(cls, sql: Dialect, value: sa.ColumnElement[Any], kind: Kind) -> NumberColumn:
        if kind is Kind.INTEGER:
            number = sa.case((value.between(LOWEST, HIGHEST), sa.cast(value, sa.BigInteger)))
            return cls(sa.cast(value, sa.BigInteger), _number_reason(sql, value.is_(None), number))
        if kind is Kind.FLOAT:
            whole = sa.and_(value.between(LOWEST, HIGHEST), sa.cast(sa.cast(value, sa.BigInteger), sa.Double) == value)
            number = sa.case((whole, sa.cast(value, sa.BigInteger)))
            return cls(number, _number_reason(sql, value.is_(None), number))
        text = sql.text(value)
        cleaned = strip(sql.trim(text), _CLEAN)
        point_zero = sa.and_(
            sa.func.length(cleaned) >= 12,
            sql.substr(cleaned, 11, 1) == ".",
            strip(sql.substr(cleaned, 12, sa.func.length(cleaned)), "0") == "",
        )
        digits = sa.case((point_zero, sql.substr(cleaned, 1, 10)), else_=cleaned)
        number = sa.case((sa.and_(sa.func.length(digits) == 10, sql.only(digits, _DIGITS)), sql.to_bigint(digits)))
        # Most values are ten bare digits: they skip the trimming and cleaning.
        tidy = sa.and_(sa.func.length(text) == 10, sql.only(text, _DIGITS))
        key = sa.case((tidy, sql.to_bigint(text)), else_=number)
        return cls(key, _number_reason(sql, missing(sql, text), number))

    @classmethod
    def hashed(cls, sql: Dialect, value: sa.ColumnElement[Any]) -> NumberColumn:
        key = sa.func.lower(sql.trim(value))
        well_formed = sa.and_(sa.func.length(key) == HEX_CHARS, sql.only(key, _HEX))
        reason = sa.case(
            (missing(sql, value), Reason.MISSING.code),
            (well_formed, Reason.UNCHECKED.code),
            else_=Reason.MALFORMED.code,
        )
        return cls(key, reason)


def _number_reason(
    sql: Dialect, is_missing: sa.ColumnElement[bool], number: sa.ColumnElement[Any]
) -> sa.ColumnElement[int]:
    """Reason code of a number that is neither cleared nor opted out (so never ``KEEP``)."""
    total = sum((_digit(sql, number, position) * (11 - position) for position in range(1, 10)), sa.literal(0))
    check_ok = (11 - total % 11) % 11 == number % 10
    return sa.case(
        (is_missing, Reason.MISSING.code),
        (number.is_(None), Reason.MALFORMED.code),
        (number % PLACEHOLDER_STEP == 0, Reason.MISSING.code),
        (check_ok, Reason.UNCHECKED.code),
        else_=Reason.BAD_CHECK_DIGIT.code,
    )


def _digit(sql: Dialect, number: sa.ColumnElement[Any], position: int) -> sa.ColumnElement[int]:
    """The ``position``-th of ten digits (1 = leftmost), by integer arithmetic."""
    return sql.quotient(number, sa.literal(10 ** (10 - position), sa.BigInteger)) % 10


def missing(sql: Dialect, value: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """NULL, blank, or one of the null tokens (``null``, ``n/a``, ...) once trimmed."""
    return sa.or_(value.is_(None), sa.func.lower(sql.trim(value)).in_(NULL_TOKENS))


def row_text(sql: Dialect, columns: Sequence[sa.ColumnElement[Any]]) -> sa.ColumnElement[str]:
    """One row as text: each column as text (NULL as ``\\N``) joined by the unit separator."""
    parts = [sa.func.coalesce(sql.text(column), _NULL_TEXT) for column in columns]
    joined: sa.ColumnElement[str] = parts[0]
    for part in parts[1:]:
        joined = joined + _FIELD_SEP + part
    return joined
