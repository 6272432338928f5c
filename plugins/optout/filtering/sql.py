"""SQL pushdown: filter tables where they live, with the file engine's semantics and manifest.

Nothing but counts crosses into Python. One connection, one transaction (REPEATABLE READ on
PostgreSQL, so every pass reads one snapshot):

1. *Stage* the check result into scratch tables: the cleared numbers and the opted-out ones (the
   cohort minus the cleared). PostgreSQL loads them with binary ``COPY`` from an in-memory buffer, other
   databases by bulk insert. Pseudonymised tables get the cohort's keyed hashes instead. Scratch tables
   are temporary, except on PostgreSQL, which never lets parallel workers read a temporary table: there
   they are UNLOGGED tables created inside the run's transaction (invisible to other sessions, gone on
   rollback, dropped before the commit).
2. *Learn*: for every table with an NHS number column, one scan keeps the rows whose number is not in
   the cleared set (the only join against the whole list); those few rows are then normalised,
   classified and grouped by person key and reason, giving the keys to remove and the counts.
3. *Write*: each output is ``CREATE TABLE ... AS SELECT`` of the rows that may be used, under a temporary
   name. Learning saw every uncleared row, so a keyed row needs only an anti-join on the (small) set of
   uncleared keys; rows without a key are looked up in the cleared set.
4. *Publish*: drop any old output and rename the new ones into place; the commit makes every output
   appear at once. Any error rolls back: no output, and the scratch tables go with the transaction.

NHS numbers are normalised in SQL exactly as :mod:`optout.nhs_number` does: trim, drop spaces, tabs and
dashes, accept ``.0`` tails, ten digits, placeholders (one digit ten times) as missing, the modulus 11
check digit from the digits' arithmetic. Only the cheap join key is computed for every row; the full
classification runs only for rows that are not cleared. Portable SQLAlchemy Core throughout; PostgreSQL
and SQLite get a one-call digit test (``translate``, ``GLOB``) where others nest ``replace``.

Output hashes (the manifest's ``sha256`` for a table) are content hashes, see :func:`content_hash`.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

from optout.clearance import KEEP, REASONS, CheckResultLike, Reason, counts_by_reason, no_removals
from optout.errors import InputError, OptOutError
from optout.manifest import Manifest, TableReport
from optout.nhs_number import HIGHEST, LOWEST, NULL_TOKENS, PLACEHOLDER_STEP
from optout.pseudonym import (
    HEX_CHARS,
    Pseudonymisation,
    check_matches,
    hashed_cohort,
    hex_digests,
    load_key,
)

if TYPE_CHECKING:
    from optout.spec import ExtractSpec, TableSpec

_T = TypeVar("_T")
ENGINE = "sql"
FORMAT = "table"
CONTENT_HASH_VERSION = "optout-sql-content/1"
PG_WORK_MEM = "256MB"  # hash joins against the (small) sets of uncleared keys stay in memory
# The one join against the whole cleared set: in 4MB batches each probe hits a cache-sized hash table
# (10M rows against 4.75M numbers here: 2.3-3.1 s, against 3.4-3.6 s with the table in one 250MB batch).
PG_LEARN_WORK_MEM = "4MB"
_INSERT_CHUNK = 50_000
# What Arrow's utf8_trim_whitespace trims (ASCII and the common Unicode spaces); RE2's \s plus '-' inside.
_TRIM = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(
    chr(code) for code in range(0x2000, 0x200B)
)
_CLEAN = ("\t", "\n", "\x0c", "\r", " ", "-")
_DIGITS = "0123456789"
_HEX = "0123456789abcdef"
_FIELD_SEP = "\x1f"
_NULL_TEXT = "\\N"
# Text forms the content hash depends on: timestamps in UTC, ISO dates.
_PG_STABLE_TEXT = "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'"
_PG_INTEGER_OIDS = {20, 21, 23}
_PG_FLOAT_OIDS = {700, 701, 1700}


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


class DatabaseError(OptOutError, RuntimeError):
    """The database failed a step of the filter; the transaction was rolled back."""

    exit_code = 1


@dataclass(frozen=True)
class Source:
    """One spec table as a selectable, with its column kinds."""

    spec: TableSpec
    index: int
    selectable: sa.FromClause
    kinds: dict[str, Kind]

    def column(self, name: str) -> sa.ColumnElement[Any]:
        return self.selectable.c[name]

    @property
    def output(self) -> str:
        """The output table: the spec's ``output`` or ``<name>_optout``."""
        return self.spec.output_name


# ----------------------------------------------------------------------------------------- expressions


class _Sql:
    """Dialect-aware expression builders (one place for the few dialect differences)."""

    def __init__(self, dialect: sa.engine.Dialect) -> None:
        self.name = dialect.name

    def trim(self, value: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        text = sa.cast(value, sa.Text)
        return sa.func.btrim(text, _TRIM) if self.name == "postgresql" else sa.func.trim(text, _TRIM)

    def only(self, value: sa.ColumnElement[str], alphabet: str) -> sa.ColumnElement[bool]:
        """True when ``value`` has no character outside ``alphabet`` (caller checks the length)."""
        if self.name == "postgresql":
            return sa.func.translate(value, alphabet, "") == ""
        if self.name == "sqlite":
            return value.op("NOT GLOB")(f"*[^{alphabet}]*")
        return _strip(value, alphabet) == ""

    def missing(self, value: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        return sa.or_(value.is_(None), sa.func.lower(self.trim(value)).in_(NULL_TOKENS))

    def content(self, columns: Sequence[sa.ColumnElement[Any]]) -> sa.ColumnElement[str]:
        """One row as text: each column as text (NULL as ``\\N``) joined by the unit separator."""
        parts = [sa.func.coalesce(sa.cast(column, sa.Text), _NULL_TEXT) for column in columns]
        joined: sa.ColumnElement[str] = parts[0]
        for part in parts[1:]:
            joined = joined + _FIELD_SEP + part
        return joined


def _strip(value: sa.ColumnElement[str], characters: Sequence[str]) -> sa.ColumnElement[str]:
    for character in characters:
        value = sa.func.replace(value, character, "")
    return value


@dataclass(frozen=True)
class NumberColumn:
    """SQL for one NHS number column: the join key every row computes, the reason only some need."""

    key: sa.ColumnElement[Any]  # the number (or hash text) to look up in the staged sets; NULL if unusable
    reason: sa.ColumnElement[int]  # reason code for a row that is in neither staged set

    @classmethod
    def plain(cls, sql: _Sql, value: sa.ColumnElement[Any], kind: Kind) -> NumberColumn:
        if kind is Kind.INTEGER:
            number = sa.case((value.between(LOWEST, HIGHEST), sa.cast(value, sa.BigInteger)))
            return cls(sa.cast(value, sa.BigInteger), _number_reason(value.is_(None), number))
        if kind is Kind.FLOAT:
            whole = sa.and_(value.between(LOWEST, HIGHEST), sa.cast(sa.cast(value, sa.BigInteger), sa.Float) == value)
            number = sa.case((whole, sa.cast(value, sa.BigInteger)))
            return cls(number, _number_reason(value.is_(None), number))
        text = sa.cast(value, sa.Text)
        cleaned = _strip(sql.trim(text), _CLEAN)
        point_zero = sa.and_(
            sa.func.length(cleaned) >= 12,
            sa.func.substr(cleaned, 11, 1) == ".",
            _strip(sa.func.substr(cleaned, 12), "0") == "",
        )
        digits = sa.case((point_zero, sa.func.substr(cleaned, 1, 10)), else_=cleaned)
        number = sa.case(
            (sa.and_(sa.func.length(digits) == 10, sql.only(digits, _DIGITS)), sa.cast(digits, sa.BigInteger))
        )
        # Most values are ten bare digits: they skip the trimming and cleaning.
        tidy = sa.and_(sa.func.length(text) == 10, sql.only(text, _DIGITS))
        key = sa.case((tidy, sa.cast(text, sa.BigInteger)), else_=number)
        return cls(key, _number_reason(sql.missing(text), number))

    @classmethod
    def hashed(cls, sql: _Sql, value: sa.ColumnElement[Any]) -> NumberColumn:
        key = sa.func.lower(sql.trim(value))
        well_formed = sa.and_(sa.func.length(key) == HEX_CHARS, sql.only(key, _HEX))
        reason = sa.case(
            (sql.missing(value), Reason.MISSING.code),
            (well_formed, Reason.UNCHECKED.code),
            else_=Reason.MALFORMED.code,
        )
        return cls(key, reason)


def _number_reason(missing: sa.ColumnElement[bool], number: sa.ColumnElement[Any]) -> sa.ColumnElement[int]:
    """Reason code of a number that is neither cleared nor opted out (so never ``KEEP``)."""
    total = sum((_digit(number, position) * (11 - position) for position in range(1, 10)), sa.literal(0))
    check_ok = (11 - total % 11) % 11 == number % 10
    return sa.case(
        (missing, Reason.MISSING.code),
        (number.is_(None), Reason.MALFORMED.code),
        (number % PLACEHOLDER_STEP == 0, Reason.MISSING.code),
        (check_ok, Reason.UNCHECKED.code),
        else_=Reason.BAD_CHECK_DIGIT.code,
    )


def _digit(number: sa.ColumnElement[Any], position: int) -> sa.ColumnElement[int]:
    """The ``position``-th of ten digits (1 = leftmost), by integer arithmetic."""
    return (number // sa.literal(10 ** (10 - position), sa.BigInteger)) % 10


class _CreateScratchAs(sa.CreateTableAs):
    """``CREATE TABLE AS`` for a scratch table: UNLOGGED on PostgreSQL (see ``_Run._scratch_prefix``)."""

    inherit_cache = True


@compiles(_CreateScratchAs, "postgresql")
def _create_unlogged_as(element: _CreateScratchAs, compiler: Any, **kw: Any) -> str:
    return "CREATE UNLOGGED" + compiler.visit_create_table_as(element, **kw).removeprefix("CREATE")


# ----------------------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class TableMeasure:
    """One output table measured in its database: counts and a content hash, never a value.

    ``uncleared_numbers``/``uncleared_people`` are None when not measured (no check result, or the
    table has no such column)."""

    name: str
    present: bool
    rows: int = 0
    rows_in: int = 0
    sha256: str | None = None
    uncleared_numbers: int | None = None
    uncleared_people: int | None = None


@dataclass(frozen=True)
class _Learnt:
    """What pass 1 found: the tables by kind and the temporary tables of uncleared rows and keys."""

    numbered: list[Source]
    keyed_only: list[Source]
    bad_rows: sa.Table
    bad_keys: sa.Table
    known: sa.Table | None


@dataclass
class _Staged:
    """Temporary tables holding the cleared and opted-out numbers (or hashes) of one check result."""

    cleared: sa.Table
    opted_out: sa.Table

    def code(self, number: NumberColumn) -> sa.ColumnElement[int]:
        """Reason code of a row known not to be cleared."""
        return sa.case((self.contains(self.opted_out, number), Reason.OPTED_OUT.code), else_=number.reason)

    @staticmethod
    def contains(table: sa.Table, number: NumberColumn) -> sa.ColumnElement[bool]:
        return sa.exists().where(table.c.n == number.key)


class _Run:
    """One filter run over one connection, inside one transaction."""

    def __init__(self, conn: sa.Connection, spec: ExtractSpec, check_result: Any, secret: Any) -> None:
        self.conn = conn
        self.spec = spec
        self.check = check_result
        self.sql = _Sql(conn.dialect)
        self.secret = secret
        self.tag = uuid.uuid4().hex[:10]
        self.metadata = sa.MetaData()
        self.sources = [_source(conn, table, index, spec.source) for index, table in enumerate(spec.tables)]
        self.key_kind = _key_kind(self.sources)
        self._staged: dict[Any, _Staged] = {}
        self._outputs: list[tuple[sa.Table, str | None, str]] = []
        self._scratch_tables: list[sa.Table] = []

    def temporary(self, role: str, *columns: sa.Column[Any]) -> sa.Table:
        """A scratch table for this run (see :meth:`_scratch_prefix`)."""
        table = sa.Table(f"optout_{role}_{self.tag}", self.metadata, *columns, prefixes=[self._scratch_prefix()])
        table.create(self.conn)
        return self._scratch(table)

    def temporary_as(self, role: str, query: sa.Select[Any]) -> sa.Table:
        """A scratch table holding ``query``'s rows (one statement: PostgreSQL may scan in parallel)."""
        name = f"optout_{role}_{self.tag}"
        self.conn.execute(_CreateScratchAs(query, name, temporary=self.sql.name != "postgresql"))
        table = sa.Table(name, self.metadata, autoload_with=self.conn)
        self._analyse(table)
        return self._scratch(table)

    def _scratch_prefix(self) -> str:
        """PostgreSQL never runs a query touching a TEMPORARY table in parallel workers, so scratch tables
        there are UNLOGGED tables created inside the run's transaction: no other session ever sees them,
        a rollback takes them away, :meth:`drop_scratch` drops them before the commit."""
        return "UNLOGGED" if self.sql.name == "postgresql" else "TEMPORARY"

    def _scratch(self, table: sa.Table) -> sa.Table:
        self._scratch_tables.append(table)
        return table

    def drop_scratch(self) -> None:
        for table in reversed(self._scratch_tables):
            table.drop(self.conn)
        self._scratch_tables.clear()

    # -- staging

    def staged(self, table: TableSpec) -> _Staged:
        """The staged sets a table is matched against: numbers, or hashes under its key."""
        config: Pseudonymisation | None = table.pseudonymised
        if config is None:
            if None not in self._staged:
                cleared = np.asarray(self.check.cleared, dtype=np.int64)
                opted_out = _sorted_minus(np.asarray(self.check.cohort, dtype=np.int64), cleared)
                self._staged[None] = self._stage("numbers", sa.BigInteger, cleared, opted_out)
            return self._staged[None]
        key = load_key(config, connection_secret=self.secret)
        if key.fingerprint not in self._staged:
            cohort = hashed_cohort(self.check, key)
            hex_lines = _hex_lines(cohort.digests)
            self._staged[key.fingerprint] = self._stage(
                f"hashes{len(self._staged)}",
                sa.String(HEX_CHARS),
                hex_lines[cohort.cleared],
                hex_lines[~cohort.cleared],
            )
        return self._staged[key.fingerprint]

    def _stage(self, role: str, kind: Any, cleared: np.ndarray, opted_out: np.ndarray) -> _Staged:
        tables = []
        for name, values in ((f"{role}_cleared", cleared), (f"{role}_opted_out", opted_out)):
            # PostgreSQL hash-joins the staged sets: an index would only cost its build.
            primary = self.sql.name != "postgresql"
            table = self.temporary(name, sa.Column("n", kind, primary_key=primary, autoincrement=False))
            self._load(table, values)
            tables.append(table)
        return _Staged(*tables)

    def _load(self, table: sa.Table, values: np.ndarray) -> None:
        """Bulk-load int64 numbers, or text lines (an (n, width) uint8 array, each ending in a newline)."""
        if not len(values):
            return
        numbers = values.ndim == 1
        if self.sql.name == "postgresql":
            # Numbers go in COPY's binary format: built by NumPy in one step, no text to print or parse.
            options, stream = ("(FORMAT binary)", _pg_binary_bigints(values)) if numbers else ("", _Stream(values))
            cursor = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.copy_expert(f"COPY {self._quoted(table)} (n) FROM STDIN {options}", stream)
                cursor.execute(f"ANALYZE {self._quoted(table)}")  # scratch tables are never auto-analysed
            finally:
                cursor.close()
            return
        width = 0 if numbers else values.shape[1] - 1
        text = "" if numbers else values[:, :-1].tobytes().decode("ascii")
        for start in range(0, len(values), _INSERT_CHUNK):
            end = min(start + _INSERT_CHUNK, len(values))
            chunk = (
                values[start:end].tolist()
                if numbers
                else [text[i * width : (i + 1) * width] for i in range(start, end)]
            )
            self.conn.execute(table.insert(), [{"n": v} for v in chunk])

    def _quoted(self, table: sa.Table) -> str:
        return self.conn.dialect.identifier_preparer.format_table(table)

    # -- the passes

    def key_of(self, source: Source) -> sa.ColumnElement[Any]:
        """The person key in its comparable form (NULL when blank or absent)."""
        name = source.spec.person_key
        if not name:
            return sa.null()
        value = source.column(name)
        if self.key_kind is Kind.INTEGER:
            return sa.cast(value, sa.BigInteger)
        return sa.func.nullif(self.sql.trim(value), "")

    def number_of(self, source: Source) -> NumberColumn:
        assert source.spec.nhs_number
        return self._number(source, source.column(source.spec.nhs_number))

    def _number(self, source: Source, value: sa.ColumnElement[Any]) -> NumberColumn:
        """``value`` read as the source's number column (its kind, plain or pseudonymised)."""
        assert source.spec.nhs_number
        if source.spec.pseudonymised is not None:
            return NumberColumn.hashed(self.sql, value)
        return NumberColumn.plain(self.sql, value, source.kinds[source.spec.nhs_number])

    def run(self) -> tuple[list[TableReport], dict[str, int]]:
        if not self.spec.filtered:
            return [self.copy(source) for source in self.sources], no_removals()
        learnt = self.learn_all()
        reports = {}
        for source in learnt.numbered:
            reports[source.index] = self.write_numbered(source, learnt.bad_rows, learnt.bad_keys)
        unseen: list[sa.Select[Any]] = []
        for source in learnt.keyed_only:
            assert learnt.known is not None
            reports[source.index] = self.write_keyed(source, learnt.bad_keys, learnt.known)
            key = self.key_of(source)
            unseen.append(
                sa.select(key.label("k")).where(key.is_not(None), ~sa.exists().where(learnt.known.c.k == key))
            )
        people = self.people(learnt.bad_rows, learnt.bad_keys, unseen)
        return [reports[source.index] for source in self.sources], people

    def learn_all(self) -> _Learnt:
        """Pass 1 over every table with numbers: uncleared rows by key and reason, the uncleared keys, and
        (when some table carries keys alone) every key seen beside a number."""
        key_type = sa.BigInteger if self.key_kind is Kind.INTEGER else sa.Text
        bad_rows = self.temporary(
            "bad_rows",
            sa.Column("t", sa.Integer),
            sa.Column("k", key_type),
            sa.Column("who", sa.Text),
            sa.Column("code", sa.Integer),
            sa.Column("n", sa.BigInteger),
        )
        numbered = [source for source in self.sources if source.spec.nhs_number]
        keyed_only = [source for source in self.sources if not source.spec.nhs_number]
        for source in numbered:
            self.learn(source, bad_rows)
        self._analyse(bad_rows)
        learners = [source.index for source in numbered if source.spec.person_key]
        # Unique by construction; PostgreSQL hash-joins it, other databases look keys up by the index.
        indexed = self.sql.name != "postgresql"
        bad_keys = self.temporary(
            "bad_keys",
            sa.Column("k", key_type, primary_key=indexed, autoincrement=False),
            sa.Column("code", sa.Integer),
        )
        first = sa.select(bad_rows.c.k, sa.func.min(bad_rows.c.code)).where(
            bad_rows.c.t.in_(learners), bad_rows.c.k.is_not(None)
        )
        self.conn.execute(bad_keys.insert().from_select(["k", "code"], first.group_by(bad_rows.c.k)))
        known = self.known_keys(key_type, numbered) if keyed_only else None
        self._analyse(bad_keys, known)
        return _Learnt(numbered, keyed_only, bad_rows, bad_keys, known)

    def measure(self, rows: bool) -> list[TableMeasure]:
        """Each output table's rows and content hash, its input's rows now and, with ``rows``, how many
        output rows carry an uncleared number or person (people learnt again from the input tables)."""
        measures: list[TableMeasure] = []
        outputs = {}
        for source in self.sources:
            as_input = replace(source.spec, table=source.output, query=None)
            try:
                outputs[source.index] = replace(_source(self.conn, as_input, source.index, None), spec=source.spec)
            except InputError:
                measures.append(TableMeasure(source.spec.name, present=False))
                continue
            count, digest = content_hash(self.conn, outputs[source.index].selectable)
            rows_in = self.conn.execute(sa.select(sa.func.count()).select_from(source.selectable)).scalar_one()
            measures.append(TableMeasure(source.spec.name, True, count, int(rows_in), digest))
        if rows and len(outputs) == len(self.sources):
            learnt = self.learn_all()
            measures = [
                self._uncleared_rows(m, outputs[s.index], learnt) for m, s in zip(measures, self.sources, strict=True)
            ]
        return measures

    def _uncleared_rows(self, measure: TableMeasure, output: Source, learnt: _Learnt) -> TableMeasure:
        """Count the rows of one output table whose number is not cleared, or whose person is not."""
        counted = sa.select(sa.func.count()).select_from(output.selectable)
        key = self.key_of(output)
        if output.spec.nhs_number:
            number = self.number_of(output)
            cleared = number.key.in_(sa.select(self.staged(output.spec).cleared.c.n))
            bad = self.conn.execute(counted.where(sa.not_(sa.and_(number.key.is_not(None), cleared)))).scalar_one()
            measure = replace(measure, uncleared_numbers=int(bad))
        if output.spec.person_key:
            uncleared: sa.ColumnElement[bool] = sa.exists().where(learnt.bad_keys.c.k == key)
            if learnt.known is not None and not output.spec.nhs_number:
                uncleared = sa.or_(uncleared, key.is_(None), ~sa.exists().where(learnt.known.c.k == key))
            measure = replace(measure, uncleared_people=int(self.conn.execute(counted.where(uncleared)).scalar_one()))
        return measure

    def learn(self, source: Source, bad_rows: sa.Table) -> None:
        """Group the rows whose number is not cleared by key (or, keyless, by number) and reason."""
        assert source.spec.nhs_number
        staged = self.staged(source.spec)
        # The one scan of every row tests membership in the cleared set only; the few rows it keeps are
        # classified (normalised, opted-out set, check digit) afterwards.
        scan = (
            sa.select(self.key_of(source).label("k"), source.column(source.spec.nhs_number).label("v"))
            .select_from(source.selectable)
            .where(~staged.contains(staged.cleared, self.number_of(source)))
        )
        if self.sql.name == "postgresql":
            self.conn.exec_driver_sql(f"SET LOCAL work_mem = '{PG_LEARN_WORK_MEM}'")
        uncleared = self.temporary_as(f"uncleared{source.index}", scan)
        if self.sql.name == "postgresql":
            self.conn.exec_driver_sql(f"SET LOCAL work_mem = '{PG_WORK_MEM}'")
        number = self._number(source, uncleared.c.v)
        rows = sa.select(
            uncleared.c.k.label("k"), number.key.label("number"), staged.code(number).label("code")
        ).subquery("uncleared")
        # A keyless row's person is its number, counted only when valid (opted out or unchecked).
        valid = rows.c.code.in_([Reason.OPTED_OUT.code, Reason.UNCHECKED.code])
        who = sa.case((sa.and_(rows.c.k.is_(None), valid), sa.cast(rows.c.number, sa.Text)))
        people = sa.select(rows.c.k, who.label("who"), rows.c.code).subquery("people")
        grouped = sa.select(
            sa.literal(source.index), people.c.k, people.c.who, people.c.code, sa.func.count()
        ).group_by(people.c.k, people.c.who, people.c.code)
        self.conn.execute(bad_rows.insert().from_select(["t", "k", "who", "code", "n"], grouped))

    def known_keys(self, key_type: Any, numbered: list[Source]) -> sa.Table:
        """Every key seen beside a number (only needed when some table carries keys alone)."""
        known = self.temporary("known", sa.Column("k", key_type, primary_key=True))
        parts = [
            sa.select(self.key_of(source).label("k")).where(self.key_of(source).is_not(None))
            for source in numbered
            if source.spec.person_key
        ]
        if parts:
            union = sa.union(*parts).subquery("seen")
            self.conn.execute(known.insert().from_select(["k"], sa.select(union.c.k)))
        return known

    def _analyse(self, *tables: sa.Table | None) -> None:
        if self.sql.name == "postgresql":
            for table in tables:
                if table is not None:
                    self.conn.exec_driver_sql(f"ANALYZE {self._quoted(table)}")

    def write_numbered(self, source: Source, bad_rows: sa.Table, bad_keys: sa.Table) -> TableReport:
        number = self.number_of(source)
        staged = self.staged(source.spec)
        keep = staged.contains(staged.cleared, number)
        if source.spec.person_key:
            # Learning saw every row: a keyed row is uncleared exactly when its key is, so keyed rows need
            # only the small anti-join; keyless rows are looked up in the cleared set (a hashed subplan).
            key = self.key_of(source)
            cleared = number.key.in_(sa.select(staged.cleared.c.n))
            keep = sa.and_(~sa.exists().where(bad_keys.c.k == key), sa.or_(key.is_not(None), cleared))
        rows_out, digest = self.create_output(source, keep)
        rows_in = self.conn.execute(sa.select(sa.func.count()).select_from(source.selectable)).scalar_one()
        own_rows = sa.select(bad_rows.c.code, sa.func.sum(bad_rows.c.n)).where(bad_rows.c.t == source.index)
        codes = _code_counts(self.conn.execute(own_rows.group_by(bad_rows.c.code)).all())
        own_removed = int(codes.sum())
        if source.spec.pseudonymised is not None:
            own = counts_by_reason(codes)
            check_matches(own, table=source.spec.name, config=source.spec.pseudonymised, kept=rows_in - own_removed)
        codes[Reason.PERSON_REMOVED.code] = rows_in - rows_out - own_removed
        return self.report(source, rows_in, rows_out, codes, digest)

    def write_keyed(self, source: Source, bad_keys: sa.Table, known: sa.Table) -> TableReport:
        key = self.key_of(source)
        bad = sa.exists().where(bad_keys.c.k == key)
        seen = sa.exists().where(known.c.k == key)
        rows_out, digest = self.create_output(source, sa.and_(key.is_not(None), seen, ~bad))
        code = sa.case(
            (key.is_(None), Reason.MISSING.code),
            (bad, Reason.PERSON_REMOVED.code),
            (~seen, Reason.UNCHECKED.code),
            else_=KEEP,
        )
        rows = sa.select(code.label("code")).select_from(source.selectable).subquery("rows")
        codes = _code_counts(self.conn.execute(sa.select(rows.c.code, sa.func.count()).group_by(rows.c.code)).all())
        return self.report(source, int(codes.sum()), rows_out, codes, digest)

    def report(self, source: Source, rows_in: int, rows_out: int, codes: np.ndarray, digest: str) -> TableReport:
        return TableReport(
            name=source.spec.name,
            file=source.output,
            format=FORMAT,
            rows_in=rows_in,
            rows_out=rows_out,
            removed=counts_by_reason(codes),
            sha256=digest,
        )

    def copy(self, source: Source) -> TableReport:
        rows, digest = self.create_output(source, sa.true())
        return TableReport(source.spec.name, source.output, FORMAT, rows, rows, no_removals(), digest)

    def create_output(self, source: Source, keep: sa.ColumnElement[bool]) -> tuple[int, str]:
        """Create the output under a temporary name; return its row count and content hash."""
        schema, _, final = source.output.rpartition(".")
        name = f"optout_new_{self.tag}_{source.index}"
        query = sa.select(source.selectable).where(keep)
        self.conn.execute(sa.CreateTableAs(query, name, schema=schema or None))
        built = sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=self.conn)
        self._outputs.append((built, schema or None, final))
        return content_hash(self.conn, built)

    def publish(self) -> None:
        """Replace each output by its new table (same schema), inside the run's transaction."""
        preparer = self.conn.dialect.identifier_preparer
        for built, schema, final in self._outputs:
            self.conn.execute(sa.schema.DropTable(sa.Table(final, sa.MetaData(), schema=schema), if_exists=True))
            self.conn.exec_driver_sql(f"ALTER TABLE {preparer.format_table(built)} RENAME TO {preparer.quote(final)}")

    def people(self, bad_rows: sa.Table, bad_keys: sa.Table, unseen: list[sa.Select[Any]]) -> dict[str, int]:
        """Distinct people removed by their first reason: by key, then by number for keyless rows."""
        codes = _code_counts([])
        by_key = sa.select(bad_keys.c.code, sa.func.count()).group_by(bad_keys.c.code)
        firsts = (
            sa.select(sa.func.min(bad_rows.c.code).label("code"))
            .where(bad_rows.c.who.is_not(None))
            .group_by(bad_rows.c.who)
            .subquery("keyless")
        )
        by_number = sa.select(firsts.c.code, sa.func.count()).group_by(firsts.c.code)
        for query in (by_key, by_number):
            for code, count in self.conn.execute(query).all():
                codes[code] += int(count)
        if unseen:
            keys = sa.union(*unseen).subquery("unseen")
            codes[Reason.UNCHECKED.code] += self.conn.execute(sa.select(sa.func.count()).select_from(keys)).scalar_one()
        return counts_by_reason(codes)


def _code_counts(rows: Sequence[Any]) -> np.ndarray:
    """(code, count) rows as a count array indexed by reason code."""
    codes = np.zeros(len(REASONS) + 1, dtype=np.int64)
    for code, count in rows:
        codes[int(code)] += int(count)
    return codes


def _key_kind(sources: list[Source]) -> Kind:
    """Keys compare as integers when every key column is an integer column, else as trimmed text."""
    kinds = [source.kinds[source.spec.person_key] for source in sources if source.spec.person_key]
    return Kind.INTEGER if kinds and all(kind is Kind.INTEGER for kind in kinds) else Kind.TEXT


def _source(conn: sa.Connection, table: TableSpec, index: int, path: Any) -> Source:
    """The table or query as a selectable; its columns checked and their kinds found."""
    if table.query:
        try:
            result = conn.exec_driver_sql(f"SELECT * FROM ({table.query}) AS optout_probe WHERE 1 = 0")
        except sa.exc.DBAPIError as exc:
            raise InputError(
                f"the query does not run: {type(exc.orig).__name__}", path=path, field=f"{table.name}.query"
            ) from None
        names = list(result.keys())
        codes = [column[1] for column in result.cursor.description] if result.cursor else []
        result.close()
        kinds = {name: _kind_of_code(conn.dialect.name, code) for name, code in zip(names, codes, strict=False)}
        selectable: sa.FromClause = sa.text(table.query).columns(*[sa.column(name) for name in names]).subquery("src")
    else:
        assert table.table
        schema, _, name = table.table.rpartition(".")
        try:
            columns = sa.inspect(conn).get_columns(name, schema=schema or None)
        except sa.exc.NoSuchTableError:
            raise InputError(
                f"no table {table.table!r} in the database", path=path, field=f"{table.name}.table"
            ) from None
        kinds = {column["name"]: Kind.of(column["type"]) for column in columns}
        selectable = sa.table(name, *[sa.column(column) for column in kinds], schema=schema or None)
    for field in ("nhs_number", "person_key"):
        column = getattr(table, field)
        if column and column not in kinds:
            raise InputError(
                f"no column {column!r}; the table has: {', '.join(kinds)}", path=path, field=f"{table.name}.{field}"
            )
    return Source(table, index, selectable, kinds)


def _kind_of_code(dialect: str, code: Any) -> Kind:
    """A query's column kind from the driver's type code (PostgreSQL type OIDs); text when unknown."""
    if dialect == "postgresql" and code in _PG_INTEGER_OIDS:
        return Kind.INTEGER
    if dialect == "postgresql" and code in _PG_FLOAT_OIDS:
        return Kind.FLOAT
    return Kind.TEXT


class _Stream(io.RawIOBase):
    """A read-only file over buffers, so ``COPY`` streams them without a copy of the whole."""

    def __init__(self, *parts: np.ndarray | bytes) -> None:
        self._parts = [
            memoryview(np.ascontiguousarray(part).view(np.uint8).ravel().data if isinstance(part, np.ndarray) else part)
            for part in parts
        ]
        self._at = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while self._parts and self._at >= len(self._parts[0]):
            self._parts.pop(0)
            self._at = 0
        if not self._parts:
            return b""
        view = self._parts[0]
        end = len(view) if size is None or size < 0 else self._at + size
        chunk = view[self._at : end].tobytes()
        self._at += len(chunk)
        return chunk


_PG_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_PG_BINARY_TRAILER = b"\xff\xff"
_PG_BIGINT_ROW = np.dtype([("fields", ">i2"), ("length", ">i4"), ("value", ">i8")])


def _pg_binary_bigints(numbers: np.ndarray) -> _Stream:
    """One bigint column in PostgreSQL's binary ``COPY`` format."""
    rows = np.empty(len(numbers), dtype=_PG_BIGINT_ROW)
    rows["fields"] = 1
    rows["length"] = 8
    rows["value"] = numbers
    return _Stream(_PG_BINARY_HEADER, rows, _PG_BINARY_TRAILER)


def _sorted_minus(values: np.ndarray, remove: np.ndarray) -> np.ndarray:
    """``values`` not in ``remove``, both sorted unique (3x faster than ``np.setdiff1d``)."""
    if not len(remove):
        return values
    at = np.minimum(np.searchsorted(remove, values), len(remove) - 1)
    return values[remove[at] != values]


def _hex_lines(digests: np.ndarray) -> np.ndarray:
    """Each digest as 64 lowercase hex digits and a newline: an (n, 65) uint8 array."""
    text = hex_digests(digests).buffers()[2]
    lines = np.empty((len(digests), HEX_CHARS + 1), dtype=np.uint8)
    lines[:, :HEX_CHARS] = np.frombuffer(text, dtype=np.uint8)[: len(digests) * HEX_CHARS].reshape(-1, HEX_CHARS)
    lines[:, HEX_CHARS] = 10
    return lines


# ----------------------------------------------------------------------------------------- content hash


def content_hash(conn: sa.Connection, table: sa.FromClause) -> tuple[int, str]:
    """Row count and a deterministic, order-independent hash of a table's content.

    Each row is written as text (every column cast to text, NULL as ``\\N``, joined by U+001F) and hashed
    to a signed 64-bit integer; the integers are summed exactly over all rows. The hash is the sha256 of
    ``optout-sql-content/1``, the row hash used, the row count and that sum, one per line. Row order does
    not matter (a database may return rows in any order); a changed, added or removed row changes it.
    Row hash: PostgreSQL's ``hashtextextended(row, 0)`` (the stable hash behind hash partitioning, four
    times cheaper than MD5), elsewhere the first 8 bytes of the row's MD5. Text forms and row hashes are
    the database's own: compare hashes within one database engine.
    """
    sql = _Sql(conn.dialect)
    row = sql.content(list(table.c))
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(_PG_STABLE_TEXT)
        method = "pg-hashtextextended"
        total: sa.ColumnElement[Any] = sa.func.coalesce(sa.func.sum(sa.func.hashtextextended(row, 0)), 0)
    else:
        _register_sqlite_hash(conn)
        method = "md5-prefix"
        total = sa.func.optout_md5_sum(row)
    count, summed = conn.execute(sa.select(sa.func.count(), total).select_from(table)).one()
    text = f"{CONTENT_HASH_VERSION}\n{method}\n{int(count)}\n{int(summed or 0)}\n"
    return int(count), hashlib.sha256(text.encode()).hexdigest()


class _Md5Sum:
    """SQLite aggregate: exact sum of the signed 64-bit MD5 prefixes (SQLite has no md5)."""

    def __init__(self) -> None:
        self.total = 0

    def step(self, text: str | None) -> None:
        digest = hashlib.md5(str(text).encode(), usedforsecurity=False).digest()
        self.total += int.from_bytes(digest[:8], "big", signed=True)

    def finalize(self) -> str:
        return str(self.total)  # text: the sum may not fit in SQLite's 64-bit integers


def _register_sqlite_hash(conn: sa.Connection) -> None:
    if conn.dialect.name != "sqlite":
        raise InputError(f"content hashes are implemented for PostgreSQL and SQLite, not {conn.dialect.name}")
    raw = conn.connection.dbapi_connection
    raw.create_aggregate("optout_md5_sum", 1, _Md5Sum)  # type: ignore[union-attr]


# ----------------------------------------------------------------------------------------- entry point


@contextmanager
def _transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One connection and one transaction; SQLite is made to put its DDL inside it too."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                conn.exec_driver_sql(f"SET LOCAL work_mem = '{PG_WORK_MEM}'")
                # The classification's long CASE makes the planner JIT-compile each pass (~0.7 s apiece),
                # for expressions that run on the few uncleared rows only.
                conn.exec_driver_sql("SET LOCAL jit = off")
                conn.exec_driver_sql(_PG_STABLE_TEXT)
                yield conn
            return
        raw = conn.connection.dbapi_connection
        legacy = getattr(raw, "isolation_level", None)
        if conn.dialect.name == "sqlite":
            raw.isolation_level = None  # type: ignore[union-attr]  # pysqlite would autocommit DDL
        try:
            with conn.begin():
                if conn.dialect.name == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                yield conn
        finally:
            if conn.dialect.name == "sqlite":
                raw.isolation_level = legacy  # type: ignore[union-attr]


def filter_sql(
    spec: ExtractSpec,
    check_result: CheckResultLike | None,
    *,
    engine: sa.Engine | str,
    connection_secret: Callable[[str], str | None] | None = None,
) -> tuple[list[TableReport], dict[str, int]]:
    """Filter every table of ``spec`` inside its database; return per-table reports and people removed.

    ``engine`` is a SQLAlchemy engine or URL (the Airflow skin turns a connection id into one);
    ``connection_secret`` reads a pseudonymisation key from an Airflow connection. Outputs replace
    their tables only when every table succeeded.
    """

    def work(run: _Run) -> tuple[list[TableReport], dict[str, int]]:
        reports, people = run.run()
        run.publish()
        run.drop_scratch()
        return reports, people

    return _session(engine, spec, check_result, connection_secret, work, keep=True)


def measure_tables(
    spec: ExtractSpec,
    check_result: CheckResultLike | None,
    *,
    engine: sa.Engine | str,
    connection_secret: Callable[[str], str | None] | None = None,
) -> list[TableMeasure]:
    """Measure each output table of ``spec`` in its database (spec order): rows, content hash, input rows
    now and, given a check result, rows carrying an uncleared number or person. Only counts leave the
    database; read-only (everything staged is rolled back)."""
    rows = check_result is not None and spec.filtered
    return _session(engine, spec, check_result, connection_secret, lambda run: run.measure(rows), keep=False)


def verify_tables(
    spec: ExtractSpec,
    manifest: Manifest,
    check_result: CheckResultLike | None,
    *,
    engine: sa.Engine | str,
    connection_secret: Callable[[str], str | None] | None = None,
) -> list[tuple[str, bool, str]]:
    """The database side of :func:`optout.verify.verify`: ``(check, ok, detail)`` for each output table's
    content hash and rows, and (given a check result) for uncleared numbers and people in the outputs."""
    given = check_result if manifest.filtered else None
    checks: list[tuple[str, bool, str]] = []
    for measure in measure_tables(spec, given, engine=engine, connection_secret=connection_secret):
        listed = manifest.table(measure.name)
        if not measure.present:
            checks.append((f"{listed.name}: table", False, f"{listed.file} is missing"))
            continue
        same = measure.sha256 == listed.sha256
        checks.append((f"{listed.name}: sha256", same, "matches the manifest" if same else "the table changed"))
        removed = sum(listed.removed.values())
        balanced = listed.rows_in - removed == listed.rows_out == measure.rows
        detail = (
            f"{measure.rows} rows in the table; manifest: {listed.rows_in} in, {removed} removed, {listed.rows_out} out"
        )
        checks.append((f"{listed.name}: rows", balanced, detail))
        if measure.uncleared_numbers is not None:
            bad = measure.uncleared_numbers
            checks.append(
                (f"{listed.name}: numbers", bad == 0, f"{bad} rows with a number that is not valid and cleared")
            )
        if measure.uncleared_people is not None:
            bad = measure.uncleared_people
            detail = f"{bad} rows of people who are not cleared (people learnt from the input tables)"
            checks.append((f"{listed.name}: people", bad == 0, detail))
    return checks


def table_hashes(engine: sa.Engine | str, tables: Sequence[str]) -> dict[str, str | None]:
    """The content hash of each named table now (``schema.name`` allowed; None when it is missing), in one
    snapshot: what the send-time gate compares with the manifest."""
    owned = isinstance(engine, str)
    bound = sa.create_engine(engine) if isinstance(engine, str) else engine
    hashes: dict[str, str | None] = {}
    try:
        with _transaction(bound) as conn:
            for name in tables:
                try:
                    hashes[name] = content_hash(conn, _reflect(conn, name))[1]
                except sa.exc.NoSuchTableError:
                    hashes[name] = None
            conn.rollback()
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(f"the database refused to hash the extract's tables ({type(exc.orig).__name__})") from None
    finally:
        if owned:
            bound.dispose()
    return hashes


def _reflect(conn: sa.Connection, qualified: str) -> sa.Table:
    schema, _, name = qualified.rpartition(".")
    return sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=conn)


def _session(
    engine: sa.Engine | str,
    spec: ExtractSpec,
    check_result: CheckResultLike | None,
    connection_secret: Callable[[str], str | None] | None,
    work: Callable[[_Run], _T],
    *,
    keep: bool,
) -> _T:
    """Run ``work`` in one transaction, committed only when ``keep``; database errors never quote data."""
    owned = isinstance(engine, str)
    bound = sa.create_engine(engine) if isinstance(engine, str) else engine
    try:
        with _transaction(bound) as conn:
            result = work(_Run(conn, spec, check_result, connection_secret))
            if not keep:
                conn.rollback()
        return result
    except sa.exc.DBAPIError as exc:
        # The driver's message may quote a value (an NHS number): name the error type only.
        raise DatabaseError(
            f"the database refused the filter ({type(exc.orig).__name__}); nothing was written. Check the "
            "connection's permissions (CREATE TABLE, TEMPORARY) and that the tables are readable"
        ) from None
    finally:
        if owned:
            bound.dispose()
