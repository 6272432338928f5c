"""The Spark engine: filter an extract where it lives, in Spark, with the file engine's semantics and manifest.

DataFrame methods and SQL text only (see :mod:`optout.homes.spark_sql`), so the same code runs on
classic PySpark and on Spark Connect (Databricks Connect, serverless). Only counts and content hashes
are ever collected to the driver.

1. *Stage* the check result once per version: Parquet ``<lists>/v<id>_<digest>`` of the cohort's
   numbers (BIGINT) and whether each is cleared, sent to Spark the first time a version is used and
   only checked (count and sums) on later runs.
2. *Learn*: every table with a number column is joined once to the staged list (broadcast when the
   cohort is small enough, else shuffled: ``OPTOUT_SPARK_JOIN``, ``OPTOUT_SPARK_BROADCAST_ROWS``) and
   tallied by reason (the removed rows by key), giving each table's counts, the keys of people who
   are not cleared (each with its first reason) and, when some table carries only keys, the keys seen
   beside a number.
3. *Write*: each table's kept rows, anti-joined to the uncleared keys (joined again to the list first
   only where some rows have no key), are written under a temporary name: a folder in the staging folder for ``path``
   tables (swapped in whole with the manifest by :func:`optout.filter.run_filter`), a table
   ``<output>__optout_<tag>`` for ``table`` tables, renamed into place only when every table is written.
   The outputs are read back for their content hashes (all in one job), and each row count must match
   what learning predicted (else the input changed while it was read).

Any Spark error is reported by its class only (a message can quote a value); a broadcast that runs out
of memory is named as such. Either way nothing is published.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optout.cascade import TABLE_CHANGED, unfiltered_report
from optout.clearance import CODE_COUNT, KEEP, CheckResultLike, Reason, counts_by_reason, no_removals
from optout.errors import InputError
from optout.exemptions import KEPT_BY_CONSENT, KEPT_WITHOUT_NUMBER, ExemptView
from optout.homes import spark_sql as q
from optout.homes.files.formats import Format
from optout.homes.spark_csv import check_input, write_csv
from optout.homes.spark_session import (
    JoinChoice,
    content_hashes,
    read_path,
    read_table,
    spark_errors,
    staged_hashes,
    staged_list,
    union,
)
from optout.input_scan import InputScan, excluded_columns
from optout.leak_scan import ColumnLeak
from optout.manifest import TableReport
from optout.nhs_number import names_for_message
from optout.pseudonym import check_matches, load_key

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from optout.resolver import Reader
    from optout.spec import ExtractSpec, TableSpec


@dataclass
class SparkTable:
    """One spec table in a run: its frame, and what learning found."""

    spec: TableSpec
    frame: DataFrame
    columns: list[str]
    number: q.NumberSql | None
    key: str | None
    codes: np.ndarray  # rows per own reason code (learnt)
    expected_out: int = 0
    keyless: int = 0  # rows with a number column but no key (learnt)


class SparkRun:
    """One extract's tables read in Spark, numbers and keys made comparable, joined to the staged list:
    what the filter and the proof (:mod:`optout.homes.spark_proof`) both start from."""

    def __init__(
        self,
        spark: SparkSession,
        spec: ExtractSpec,
        check_result: Any,
        join: JoinChoice,
        secret: Reader | None = None,
    ) -> None:
        """:param secret: reads a pseudonymisation key kept in a connection (see :mod:`optout.resolver`)."""
        self.spark = spark
        self.spec = spec
        self.check = check_result
        # no_nhs_number_disproportionate (optout.exemptions): rows without a usable number pass, and are counted.
        self.keeps_unusable = isinstance(check_result, ExemptView) and check_result.keeps_unusable
        self.tag = uuid.uuid4().hex[:10]
        with spark_errors("reading the tables"):
            frames = {t.name: read_table(spark, t) for t in spec.tables}
            types = {name: dict(frame.dtypes) for name, frame in frames.items()}
        for t in spec.tables:
            for name in (t.nhs_number, t.person_key):
                if name and name not in types[t.name]:
                    raise InputError(
                        f"no column {name!r}; the table has: {names_for_message(types[t.name])}",
                        path=t.path,
                        field=name,
                    )
        keyed = [types[t.name][t.person_key] for t in spec.tables if t.person_key]
        self.integer_keys = bool(keyed) and all(q.integer_type(kind) for kind in keyed)
        self.no_key = f"CAST(NULL AS {'BIGINT' if self.integer_keys else 'STRING'})"
        self.tables = [
            SparkTable(
                t,
                frames[t.name],
                list(frames[t.name].columns),
                reading(t, types[t.name]) if t.nhs_number else None,
                q.key_sql(t.person_key, self.integer_keys) if t.person_key else None,
                np.zeros(CODE_COUNT, dtype=np.int64),
            )
            for t in spec.tables
        ]
        self.join = join
        self.key_hint = "broadcast"  # the uncleared keys' join, sized by learning
        self.lists: dict[str, DataFrame] = {}  # the staged list each numbered table joins (by table name)
        if check_result is not None and spec.filtered:
            self.list = staged_list(spark, check_result)
            self.hint = join.hint(len(check_result.cohort))
            hashes: dict[str, DataFrame] = {}  # by key fingerprint: each key's hashes staged once
            for t in spec.tables:
                if t.pseudonymised is not None and t.nhs_number:
                    key = load_key(t.pseudonymised, connection_secret=secret)
                    if key.fingerprint not in hashes:
                        hashes[key.fingerprint] = staged_hashes(spark, check_result, key)
                    self.lists[t.name] = hashes[key.fingerprint]

    def joined(self, table: SparkTable, frame: DataFrame, number: q.NumberSql) -> DataFrame:
        """``frame`` with its number read by ``number`` and joined to the table's staged list (the numbers,
        or a pseudonymised table's hashes under its key), giving ``CLEARED``."""
        listed = self.lists.get(table.spec.name, self.list)
        return number.apply(frame).join(listed.hint(self.hint), on=number.on, how="left")

    def coded(self, table: SparkTable) -> DataFrame:
        """The table's rows with their own code (``CODE``) and key (``KEY``), joined once to the list."""
        assert table.number is not None
        frame = table.frame.selectExpr("*", f"{table.key or self.no_key} AS {q.KEY}")
        joined = self.joined(table, frame, table.number)
        code = q.own_code(self.keeps_unusable)
        return joined.selectExpr(*(q.column(c) for c in table.columns), q.NUMBER, q.KEY, f"{code} AS {q.CODE}")

    def learn(self) -> tuple[DataFrame, DataFrame | None, dict[str, int]]:
        """Tally every numbered table's rows by reason in one pass; return the uncleared keys with their
        first reason, the keys seen beside a number (when a table needs them) and people removed.

        No row is cached: the one reading that normalises the numbers and joins the list keeps a tally
        (rows by table, own code and whether they have a key; a removed row also by its key, or without
        one by its number), small because most rows are kept. The uncleared keys, people by reason (which
        also size the uncleared keys' join: :attr:`key_hint`) and each table's counts come from it; the
        rows kept by their own number but removed as a person are the rows of an uncleared key (their key
        column alone, read again) less those removed for their own number."""
        numbered = {index: t for index, t in enumerate(self.tables) if t.number is not None}
        nobody = self.nobody()
        removed = f"{q.CODE} <> {KEEP}"
        coded = [
            self.coded(t).selectExpr(
                f"{i} AS {q.TABLE}",
                f"CASE WHEN {removed} THEN {q.KEY} END AS {q.KEY}",
                f"CASE WHEN {removed} AND {q.KEY} IS NULL THEN {q.NUMBER} END AS {q.NUMBER}",
                q.CODE,
                f"{q.KEY} IS NULL AS {q.KEYLESS}",
            )
            for i, t in numbered.items()
        ]
        tally = union([nobody, *coded]).groupBy(q.TABLE, q.KEY, q.NUMBER, q.CODE, q.KEYLESS).count().localCheckpoint()
        bad = (
            tally.where(f"{q.KEY} IS NOT NULL")
            .groupBy(q.KEY)
            .agg({q.CODE: "min"})
            .withColumnRenamed(f"min({q.CODE})", q.CODE)
            .localCheckpoint()
        )
        firsts = tally.where(f"{removed} AND {q.KEY} IS NULL AND {q.NUMBER} IS NOT NULL").groupBy(q.NUMBER)
        first_codes = union(
            [
                bad.selectExpr(q.CODE, f"TRUE AS {q.BAD}"),
                firsts.agg({q.CODE: "min"})
                .withColumnRenamed(f"min({q.CODE})", q.CODE)
                .selectExpr(q.CODE, f"FALSE AS {q.BAD}"),
            ]
        )
        people = np.zeros(CODE_COUNT, dtype=np.int64)
        bad_keys = 0
        for code, keyed, count in first_codes.groupBy(q.CODE, q.BAD).count().collect():
            people[int(code)] += int(count)
            bad_keys += int(count) if keyed else 0
        self.key_hint = self.join.hint(bad_keys)
        flagged = bad.selectExpr(q.KEY, f"TRUE AS {q.BAD}")
        removed_keyed = np.zeros(len(self.tables), dtype=np.int64)  # rows removed for their own number, with a key
        for index, code, keyed, keyless, count in (
            tally.selectExpr(q.TABLE, q.CODE, f"{q.KEY} IS NOT NULL AS {q.BAD}", q.KEYLESS, "count")
            .groupBy(q.TABLE, q.CODE, q.BAD, q.KEYLESS)
            .agg({"count": "sum"})
            .collect()
        ):
            table = numbered[int(index)]
            table.codes[int(code)] += int(count)
            table.keyless += int(count) if keyless else 0
            removed_keyed[int(index)] += int(count) if keyed else 0
        keys = {i: t for i, t in numbered.items() if t.key is not None}
        if keys and bad_keys:
            of_bad = union(
                [self.tables[i].frame.selectExpr(f"{i} AS {q.TABLE}", f"{t.key} AS {q.KEY}") for i, t in keys.items()]
            )
            of_bad = of_bad.join(flagged.select(q.KEY).hint(self.key_hint), on=q.KEY, how="left_semi")
            for index, count in of_bad.groupBy(q.TABLE).count().collect():
                hit = int(count) - int(removed_keyed[int(index)])  # kept by number, removed as a person
                numbered[int(index)].codes[Reason.PERSON_REMOVED.code] += hit
                numbered[int(index)].codes[KEEP] -= hit
        for table in numbered.values():
            table.expected_out = int(table.codes[KEEP])
        needs_known = any(t.number is None for t in self.tables)
        known = None
        if needs_known:
            seen = [t.frame.selectExpr(f"{t.key} AS {q.KEY}") for t in keys.values()] or [nobody.select(q.KEY)]
            known = union(seen).where(f"{q.KEY} IS NOT NULL").distinct().localCheckpoint()
        self.note_consent(flagged)
        unseen, keys_only = [], []
        for table in self.tables:
            if table.number is None:
                assert known is not None and table.key is not None
                decided = self.decided_keys_only(table, flagged, known)
                for code, count in decided.groupBy(q.REASON).count().collect():
                    table.codes[int(code)] += int(count)
                table.expected_out = int(table.codes[KEEP])
                unseen.append(decided.where(f"{q.REASON} = {Reason.UNCHECKED.code}").select(q.KEY))
                keys_only.append(decided)
        if unseen:
            people[Reason.UNCHECKED.code] += union(unseen).distinct().count()
        self.note_unusable(flagged, keys_only)
        return flagged, known, counts_by_reason(people)

    def coded_rows(self) -> DataFrame:
        """Every numbered table's rows as (key, number, code), read again: the exemptions' counts need the
        rows themselves, which learning keeps only as a tally (so only a run under an exemption pays for it)."""
        coded = [self.coded(t).selectExpr(q.KEY, q.NUMBER, q.CODE) for t in self.tables if t.number is not None]
        return union([self.nobody().select(q.KEY, q.NUMBER, q.CODE), *coded])

    def nobody(self) -> DataFrame:
        """No rows, in the learnt rows' columns: what a union starts from when no table has a number."""
        return self.spark.range(0).selectExpr(
            f"-1 AS {q.TABLE}",
            f"{self.no_key} AS {q.KEY}",
            f"CAST(NULL AS BIGINT) AS {q.NUMBER}",
            f"0 AS {q.CODE}",
            f"FALSE AS {q.KEYLESS}",
        )

    def note_consent(self, flagged: DataFrame) -> None:
        """With ``consented:``, count the rows kept by consent (:class:`optout.exemptions.KeptTally`): kept
        rows whose number is a consented person's the list alone would remove (``CONSENTED`` in the staged
        list, which clears those people already), and those distinct numbers. One job, counts only."""
        view = self.check
        if not (isinstance(view, ExemptView) and view.consents and len(view.consent_only)):
            return
        consented = self.list.where(q.CONSENTED).select(q.NUMBER)
        kept = self.coded_rows().where(f"{q.CODE} = {KEEP}")
        kept = kept.join(consented.hint(self.hint), on=q.NUMBER, how="left_semi")
        kept = kept.join(flagged.select(q.KEY).hint(self.key_hint), on=q.KEY, how="left_anti")  # keyless rows stay
        rows, people = kept.selectExpr("count(*)", f"count(DISTINCT {q.NUMBER})").collect()[0]
        view.tally.counted(KEPT_BY_CONSENT, int(rows), int(people))

    def note_unusable(self, flagged: DataFrame, keys_only: list[DataFrame]) -> None:
        """With no_nhs_number_disproportionate, count the rows kept without a usable number
        (:class:`optout.exemptions.KeptTally`): kept rows of numbered tables whose number is not valid
        (their person not removed), and kept rows of key-only tables with no key or a key never seen
        beside a number; people are their distinct keys, each row without a key one more. One job."""
        if not self.keeps_unusable:
            return
        kept = self.coded_rows().where(f"{q.CODE} = {KEEP} AND {q.NUMBER} IS NULL").select(q.KEY)
        kept = kept.join(flagged.select(q.KEY).hint(self.key_hint), on=q.KEY, how="left_anti")  # keyless rows stay
        passed = [
            d.where(f"{q.REASON} = {KEEP} AND ({q.KEY} IS NULL OR {q.KNOWN} IS NULL)").select(q.KEY) for d in keys_only
        ]
        counted = union([kept, *passed]).selectExpr(
            "count(*)", f"count(DISTINCT {q.KEY})", f"count_if({q.KEY} IS NULL)"
        )
        rows, keyed, keyless = counted.collect()[0]
        self.check.tally.counted(KEPT_WITHOUT_NUMBER, int(rows), int(keyed) + int(keyless))

    def leaks(self, *frames: tuple[str, DataFrame]) -> list[ColumnLeak]:
        """Valid NHS numbers not in the cleared list, in any cell of any column of each ``(table, frame)``,
        counted per column (the leak scan's rule as Spark SQL: :func:`optout.homes.spark_sql.leak_candidates`);
        a column of a type the scan cannot read is reported unscannable. One reading of all the frames
        together; only the counts are collected."""
        candidates: list[DataFrame] = []
        unscannable: list[ColumnLeak] = []
        for position, (name, frame) in enumerate(frames):
            parts: list[str] = []
            may_hold: list[str] = []
            for index, (column, kind) in enumerate(frame.dtypes):
                try:
                    cells = q.leak_candidates(column, kind, index)
                except q.Unscannable:
                    unscannable.append(ColumnLeak(name, column, 0, unscannable=True))
                    continue
                if cells is not None:
                    parts.append(cells[0])
                    may_hold.append(cells[1])
            if parts:
                rows = frame.where(" OR ".join(may_hold))  # most rows hold nothing number-like: no arrays for them
                candidates.append(rows.selectExpr(f"{position} AS t", f"explode(concat({', '.join(parts)})) AS x"))
        if not candidates:
            return unscannable
        numbers = union(candidates).selectExpr("t", "x.c AS c", f"x.n AS {q.NUMBER}").where(q.valid_number(q.NUMBER))
        # Valid candidates tallied by value, kept: the inputs are read once, and the list is joined (and
        # broadcast) only when some cell holds a valid number at all.
        tallied = numbers.groupBy("t", "c", q.NUMBER).count().localCheckpoint()
        if tallied.isEmpty():
            return unscannable
        cleared = self.list.where(q.CLEARED).select(q.NUMBER)
        uncleared = tallied.join(cleared.hint(self.hint), on=q.NUMBER, how="left_anti")
        counted = uncleared.groupBy("t", "c").agg({"count": "sum"})
        found = []
        for position, index, count in sorted(counted.collect()):
            name, frame = frames[int(position)]
            found.append(ColumnLeak(name, frame.columns[int(index)], int(count)))
        return [leak for leak in found if leak.values] + unscannable

    def scan_inputs(self, scan: InputScan) -> None:
        """The input leak scan (:mod:`optout.input_scan`) in Spark: each input's undeclared columns that the
        spec does not exclude, counted per column, all inputs read together; refused before anything is written."""
        excluded = excluded_columns(self.spec)
        frames = []
        for table in self.tables:
            skip = excluded.get(table.spec.name, set()) | {table.spec.nhs_number, table.spec.person_key}
            columns = [q.column(c) for c in table.columns if c not in skip]
            if columns:
                frames.append((table.spec.name, table.frame.select(*columns)))
        scan.counted(self.leaks(*frames))
        scan.require_clean()

    def decided_keys_only(self, table: SparkTable, flagged: DataFrame, known: DataFrame) -> DataFrame:
        """A key-only table's rows with their reason (no key, never seen beside a number, or uncleared) and
        whether the key was seen beside a number (``KNOWN``)."""
        frame = table.frame.selectExpr("*", f"{table.key} AS {q.KEY}")
        frame = frame.join(known.selectExpr(q.KEY, f"TRUE AS {q.KNOWN}").hint(self.hint), on=q.KEY, how="left")
        frame = frame.join(flagged.hint(self.key_hint), on=q.KEY, how="left")
        passes = self.keeps_unusable  # no_nhs_number_disproportionate: nobody knows a number for them
        reason = (
            f"CASE WHEN {q.KEY} IS NULL THEN {KEEP if passes else Reason.MISSING.code} WHEN {q.KNOWN} IS NULL "
            f"THEN {KEEP if passes else Reason.UNCHECKED.code} WHEN {q.BAD} THEN {Reason.PERSON_REMOVED.code} "
            f"ELSE {KEEP} END"
        )
        return frame.selectExpr(*(q.column(c) for c in table.columns), q.KEY, q.KNOWN, f"{reason} AS {q.REASON}")

    def kept(self, table: SparkTable, flagged: DataFrame, known: DataFrame | None) -> DataFrame:
        """The rows of ``table`` that may be used, with only its own columns.

        A table whose every row has a key needs no second reading of its numbers: a keyed row whose own
        number is not kept put its key among the uncleared (``flagged``), so the anti-join on keys alone
        decides, as a hand-written semi-join would (a row that has lost its key since learning is dropped,
        and the row count check then refuses the run)."""
        if table.number is None:
            assert known is not None
            decided = self.decided_keys_only(table, flagged, known)
            return decided.where(f"{q.REASON} = {KEEP}").select(*table.columns)
        if table.key is not None and table.keyless == 0:
            frame = table.frame.selectExpr("*", f"{table.key} AS {q.KEY}").where(f"{q.KEY} IS NOT NULL")
        else:
            frame = self.coded(table).where(f"{q.CODE} = {KEEP}")
        if table.key is not None:
            frame = frame.join(flagged.select(q.KEY).hint(self.key_hint), on=q.KEY, how="left_anti")
        return frame.select(*table.columns)


def reading(table: TableSpec, types: dict[str, str]) -> q.NumberSql:
    """How the table's number column is read: an NHS number of its Spark type, or a pseudonymised id."""
    assert table.nhs_number
    if table.pseudonymised is not None:
        return q.hashed_sql(table.nhs_number)
    return q.number_sql(table.nhs_number, types[table.nhs_number], table=table.name, where=table.path)


# ----------------------------------------------------------------------------------------- writing


class _Outputs:
    """Outputs written under temporary names, published together."""

    def __init__(self, spark: SparkSession, staging: Path, tag: str) -> None:
        self.spark = spark
        self.staging = staging
        self.tag = tag
        self._tables: list[tuple[str, str]] = []  # (temporary, final)

    def write(self, table: TableSpec, frame: DataFrame) -> DataFrame:
        """Write ``frame`` for ``table``; return the written output, read back."""
        if table.in_database:
            final = table.output_name
            temporary = f"{final}__optout_{self.tag}"
            self._tables.append((temporary, final))
            frame.write.mode("error").saveAsTable(q.quote(temporary))
            return self.spark.table(q.quote(temporary))
        target = str(self.staging / table.output_name)
        if table.format is Format.PARQUET:
            frame.write.mode("error").parquet(target)
        else:
            write_csv(frame, Path(target), table.csv)
        return read_path(self.spark, target, table.format, table.csv)

    def publish(self) -> None:
        for temporary, final in self._tables:
            self.spark.sql(f"DROP TABLE IF EXISTS {q.quote(final)}")
            self.spark.sql(f"ALTER TABLE {q.quote(temporary)} RENAME TO {q.quote(final)}")
        self._tables.clear()

    def discard(self) -> None:
        for temporary, _ in self._tables:
            self.spark.sql(f"DROP TABLE IF EXISTS {q.quote(temporary)}")
        self._tables.clear()


def output_format(table: TableSpec) -> str:
    """The manifest's ``format`` of a Spark output: a Spark table, or a folder of CSV or Parquet parts."""
    return "spark-table" if table.in_database else f"spark-{table.format.value}"


def filter_spark(
    spec: ExtractSpec,
    staging: Path,
    check_result: CheckResultLike | None,
    *,
    spark: SparkSession,
    scan: InputScan | None = None,
    secret: Reader | None = None,
) -> tuple[list[TableReport], dict[str, int]]:
    """Filter (or, for direct care and exemptions, copy) every table of ``spec`` in Spark.

    ``path`` outputs go into ``staging`` (a folder the Spark session can write); ``table`` outputs
    replace their tables only when every table succeeded. Returns per-table reports and people removed.

    :param secret: reads a pseudonymisation key kept in a connection (see :mod:`optout.resolver`).
    """
    with spark_errors("reading the CSV inputs"):
        for each in spec.tables:
            if each.path is not None and each.format is Format.CSV:
                check_input(spark, each)  # before anything reads it: a file Spark would misread is refused
    run = SparkRun(spark, spec, check_result, JoinChoice.from_env(), secret)
    if scan is not None:
        with spark_errors("scanning the inputs"):
            run.scan_inputs(scan)
    outputs = _Outputs(spark, staging, run.tag)
    reports = []
    try:
        with spark_errors("filtering the extract"):
            filtering = check_result is not None and spec.filtered
            flagged, known, people = run.learn() if filtering else (None, None, no_removals())
            if filtering:
                _check_keys(run.tables)  # a wrong pseudonymisation key stops the run before anything is written
            written = [
                outputs.write(table.spec, run.kept(table, flagged, known) if flagged is not None else table.frame)
                for table in run.tables
            ]
            for table, (rows, digest) in zip(run.tables, content_hashes(written), strict=True):
                if not filtering:
                    report = unfiltered_report(table.spec, rows, digest)
                elif rows != table.expected_out:
                    raise InputError(TABLE_CHANGED, path=table.spec.path, field=table.spec.name)
                else:
                    report = TableReport(
                        name=table.spec.name,
                        file=table.spec.output_name,
                        format="",
                        rows_in=int(table.codes.sum()),
                        rows_out=rows,
                        removed=counts_by_reason(table.codes),
                        sha256=digest,
                    )
                reports.append(_formatted(report, table.spec))
            outputs.publish()
    finally:
        with spark_errors("dropping temporary tables"):
            outputs.discard()
    return reports, people


def _check_keys(tables: list[SparkTable]) -> None:
    """Stop when a pseudonymised table's ids mostly miss the cohort: the key is wrong
    (:func:`optout.pseudonym.check_matches`, on the counts learnt, as the file engine checks its own)."""
    for table in tables:
        config = table.spec.pseudonymised
        if config is not None and table.number is not None:
            kept = int(table.codes[KEEP] + table.codes[Reason.PERSON_REMOVED.code])
            check_matches(counts_by_reason(table.codes), table=table.spec.name, config=config, kept=kept)


def _formatted(report: TableReport, table: TableSpec) -> TableReport:
    return replace(report, format=output_format(table))
