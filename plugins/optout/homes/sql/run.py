"""One run of the SQL home over one connection, inside one transaction: learn, write, publish, measure.

1. *Stage* the check result into scratch tables (:mod:`optout.homes.sql.staging`).
2. *Learn*: for every table with an NHS number column, one scan keeps the rows whose number is not in
   the cleared set (the only join against the whole list); those few rows are then normalised,
   classified and grouped by person key and reason, giving the keys to remove and the counts.
3. *Write*: each output is ``CREATE TABLE ... AS SELECT`` of the rows that may be used, under a temporary
   name. Learning saw every uncleared row, so a keyed row needs only an anti-join on the (small) set of
   uncleared keys; rows without a key are looked up in the cleared set.
4. *Publish*: drop any old output and rename the new ones into place; the commit makes every output
   appear at once. Any error rolls back: no output, and the scratch tables go with the transaction.
   Where each DDL statement commits (Snowflake), the dialect swaps each output in whole instead and the
   run drops what it created itself (:meth:`Run.discard`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from optout.clearance import KEEP, REASONS, Reason, counts_by_reason, no_removals
from optout.errors import InputError
from optout.exemptions import ExemptView
from optout.homes.sql.content_hash import content_hash
from optout.homes.sql.dialect import Dialect
from optout.homes.sql.expressions import Kind, NumberColumn
from optout.homes.sql.scratch import Scratch
from optout.homes.sql.staging import Staging
from optout.manifest import TableReport
from optout.nhs_number import names_for_message
from optout.pseudonym import check_matches

if TYPE_CHECKING:
    import pyarrow as pa

    from optout.leak_scan import ColumnLeak
    from optout.spec import ExtractSpec, TableSpec

FORMAT = "table"


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


@dataclass(frozen=True)
class TableMeasure:
    """One output table measured in its database: counts and a content hash, never a value.

    ``uncleared_numbers``/``uncleared_people`` are None when not measured (no check result, or the
    table has no such column); ``leaks`` is None when the caller scans the output's cells itself (a
    home that scans where the data lives, such as Spark, gives the counts per column here, and the output's
    ``schema``, whose names and metadata the caller scans)."""

    name: str
    present: bool
    rows: int = 0
    rows_in: int = 0
    sha256: str | None = None
    uncleared_numbers: int | None = None
    uncleared_people: int | None = None
    leaks: list[ColumnLeak] | None = None
    schema: pa.Schema | None = None


@dataclass(frozen=True)
class _Learnt:
    """What pass 1 found: the tables by kind and the temporary tables of uncleared rows and keys."""

    numbered: list[Source]
    keyed_only: list[Source]
    bad_rows: sa.Table
    bad_keys: sa.Table
    known: sa.Table | None


class Run:
    """One filter run over one connection, inside one transaction."""

    def __init__(
        self,
        conn: sa.Connection,
        dialect: Dialect,
        spec: ExtractSpec,
        check_result: Any,
        secret: Callable[[str], str | None] | None,
    ) -> None:
        self.conn = conn
        self.dialect = dialect
        self.spec = spec
        self.scratch = Scratch(conn, dialect)
        self.staging = Staging(self.scratch, check_result, secret)
        self.sources = [_source(conn, dialect, table, index, spec.source) for index, table in enumerate(spec.tables)]
        self.key_kind = _key_kind(self.sources)
        self._outputs: list[tuple[sa.Table, str]] = []

    def key_of(self, source: Source) -> sa.ColumnElement[Any]:
        """The person key in its comparable form (NULL when blank or absent)."""
        name = source.spec.person_key
        if not name:
            return sa.null()
        value = source.column(name)
        if self.key_kind is Kind.INTEGER:
            return sa.cast(value, sa.BigInteger)
        return sa.func.nullif(self.dialect.trim(value), "")

    def number_of(self, source: Source) -> NumberColumn:
        assert source.spec.nhs_number
        return self._number(source, source.column(source.spec.nhs_number))

    def _number(self, source: Source, value: sa.ColumnElement[Any]) -> NumberColumn:
        """``value`` read as the source's number column (its kind, plain or pseudonymised)."""
        assert source.spec.nhs_number
        if source.spec.pseudonymised is not None:
            return NumberColumn.hashed(self.dialect, value)
        return NumberColumn.plain(self.dialect, value, source.kinds[source.spec.nhs_number])

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
        self.note_consent(learnt)
        return [reports[source.index] for source in self.sources], people

    def note_consent(self, learnt: _Learnt) -> None:
        """With ``consented:``, tally the rows kept by consent (:class:`optout.exemptions.KeptTally`): their
        number is a consented person's the list alone would remove (the staged cleared set holds those
        people already, so the rows were written), and their person was not removed."""
        view = self.staging.check
        if not (isinstance(view, ExemptView) and view.consents and len(view.consent_only)):
            return
        indexed = self.dialect.indexed_sets
        consent = self.scratch.table("consent", sa.Column("n", sa.BigInteger, primary_key=indexed, autoincrement=False))
        self.dialect.load(self.conn, consent, view.consent_only)
        for source in learnt.numbered:
            number = self.number_of(source)
            kept: sa.ColumnElement[bool] = sa.exists().where(consent.c.n == number.key)
            if source.spec.person_key:
                kept = sa.and_(kept, ~sa.exists().where(learnt.bad_keys.c.k == self.key_of(source)))
            found = self.conn.execute(sa.select(number.key).select_from(source.selectable).where(kept)).scalars()
            view.tally.consent(np.fromiter(found, dtype=np.int64))

    def learn_all(self) -> _Learnt:
        """Pass 1 over every table with numbers: uncleared rows by key and reason, the uncleared keys, and
        (when some table carries keys alone) every key seen beside a number."""
        key_type = sa.BigInteger() if self.key_kind is Kind.INTEGER else self.dialect.text_type
        bad_rows = self.scratch.table(
            "bad_rows",
            sa.Column("t", sa.Integer),
            sa.Column("k", key_type),
            sa.Column("who", self.dialect.text_type),
            sa.Column("code", sa.Integer),
            sa.Column("n", sa.BigInteger),
        )
        numbered = [source for source in self.sources if source.spec.nhs_number]
        keyed_only = [source for source in self.sources if not source.spec.nhs_number]
        for source in numbered:
            self.learn(source, bad_rows)
        self.scratch.analyse(bad_rows)
        learners = [source.index for source in numbered if source.spec.person_key]
        # Unique by construction; PostgreSQL, DuckDB and others hash-join it, SQLite looks keys up by the index.
        indexed = self.dialect.indexed_sets
        bad_keys = self.scratch.table(
            "bad_keys",
            sa.Column("k", key_type, primary_key=indexed, autoincrement=False),
            sa.Column("code", sa.Integer),
        )
        first = sa.select(bad_rows.c.k, sa.func.min(bad_rows.c.code)).where(
            bad_rows.c.t.in_(learners), bad_rows.c.k.is_not(None)
        )
        self.conn.execute(bad_keys.insert().from_select(["k", "code"], first.group_by(bad_rows.c.k)))
        known = self.known_keys(key_type, numbered) if keyed_only else None
        self.scratch.analyse(bad_keys, known)
        return _Learnt(numbered, keyed_only, bad_rows, bad_keys, known)

    def measure(self, rows: bool) -> list[TableMeasure]:
        """Each output table's rows and content hash, its input's rows now and, with ``rows``, how many
        output rows carry an uncleared number or person (people learnt again from the input tables)."""
        measures: list[TableMeasure] = []
        outputs = {}
        for source in self.sources:
            as_input = replace(source.spec, table=source.output, query=None)
            try:
                outputs[source.index] = replace(
                    _source(self.conn, self.dialect, as_input, source.index, None), spec=source.spec
                )
            except InputError:
                measures.append(TableMeasure(source.spec.name, present=False))
                continue
            count, digest = content_hash(self.conn, outputs[source.index].selectable, self.dialect)
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
            cleared = number.key.in_(sa.select(self.staging.staged(output.spec).cleared.c.n))
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
        staged = self.staging.staged(source.spec)
        # The one scan of every row tests membership in the cleared set only; the few rows it keeps are
        # classified (normalised, opted-out set, check digit) afterwards.
        scan = (
            sa.select(self.key_of(source).label("k"), source.column(source.spec.nhs_number).label("v"))
            .select_from(source.selectable)
            .where(~staged.contains(staged.cleared, self.number_of(source)))
        )
        with self.dialect.whole_list_join(self.conn):
            uncleared = self.scratch.table_as(f"uncleared{source.index}", scan)
        number = self._number(source, uncleared.c.v)
        rows = sa.select(
            uncleared.c.k.label("k"), number.key.label("number"), staged.code(number).label("code")
        ).subquery("uncleared")
        # A keyless row's person is its number, counted only when valid (opted out or unchecked).
        valid = rows.c.code.in_([Reason.OPTED_OUT.code, Reason.UNCHECKED.code])
        who = sa.case((sa.and_(rows.c.k.is_(None), valid), self.dialect.text(rows.c.number)))
        people = sa.select(rows.c.k, who.label("who"), rows.c.code).subquery("people")
        grouped = sa.select(
            sa.literal(source.index), people.c.k, people.c.who, people.c.code, sa.func.count()
        ).group_by(people.c.k, people.c.who, people.c.code)
        self.conn.execute(bad_rows.insert().from_select(["t", "k", "who", "code", "n"], grouped))

    def known_keys(self, key_type: Any, numbered: list[Source]) -> sa.Table:
        """Every key seen beside a number (only needed when some table carries keys alone)."""
        known = self.scratch.table("known", sa.Column("k", key_type, primary_key=self.dialect.indexed_sets))
        parts = [
            sa.select(self.key_of(source).label("k")).where(self.key_of(source).is_not(None))
            for source in numbered
            if source.spec.person_key
        ]
        if parts:
            union = sa.union(*parts).subquery("seen")
            self.conn.execute(known.insert().from_select(["k"], sa.select(union.c.k)))
        return known

    def write_numbered(self, source: Source, bad_rows: sa.Table, bad_keys: sa.Table) -> TableReport:
        number = self.number_of(source)
        staged = self.staging.staged(source.spec)
        keep = staged.contains(staged.cleared, number)
        if source.spec.person_key:
            # Learning saw every row: a keyed row is uncleared exactly when its key is, so keyed rows need
            # only the small anti-join; keyless rows are looked up in the cleared set (a hashed subplan).
            # Without one snapshot learning may not have seen every row: every row is looked up.
            key = self.key_of(source)
            cleared = number.key.in_(sa.select(staged.cleared.c.n))
            checked = sa.or_(key.is_not(None), cleared) if self.dialect.one_snapshot else cleared
            keep = sa.and_(~sa.exists().where(bad_keys.c.k == key), checked)
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
        name = f"optout_new_{self.scratch.tag}_{source.index}"
        query = sa.select(source.selectable).where(keep)
        self.conn.execute(self.dialect.create_table_as(query, name, schema or None))
        built = self.dialect.table(self.conn, name, schema or None)
        self._outputs.append((built, final))
        return content_hash(self.conn, built, self.dialect)

    def publish(self) -> None:
        """Replace each output by its new table (same schema), inside the run's transaction."""
        while self._outputs:
            built, final = self._outputs[0]
            self.dialect.replace(self.conn, built, final)
            self._outputs.pop(0)

    def discard(self) -> None:
        """Drop the scratch tables and the new outputs not yet published: what a rollback would take back
        where DDL is transactional (the run's caller calls this where it is not)."""
        for built, _ in self._outputs:
            self.conn.execute(sa.schema.DropTable(built, if_exists=True))
        self._outputs.clear()
        self.scratch.drop(if_exists=True)

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


def _source(conn: sa.Connection, dialect: Dialect, table: TableSpec, index: int, path: Any) -> Source:
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
        kinds = {name: dialect.query_kind(code) for name, code in zip(names, codes, strict=False)}
        selectable: sa.FromClause = sa.text(table.query).columns(*[sa.column(name) for name in names]).subquery("src")
    else:
        assert table.table
        schema, _, name = table.table.rpartition(".")
        try:
            kinds = dialect.columns(conn, name, schema or None)
        except sa.exc.NoSuchTableError:
            raise InputError(
                f"no table {table.table!r} in the database", path=path, field=f"{table.name}.table"
            ) from None
        selectable = sa.table(name, *[sa.column(column) for column in kinds], schema=schema or None)
    for field in ("nhs_number", "person_key"):
        column = getattr(table, field)
        if column and column not in kinds:
            raise InputError(
                f"no column {column!r}; the table has: {names_for_message(kinds)}",
                path=path,
                field=f"{table.name}.{field}",
            )
    return Source(table, index, selectable, kinds)
