"""The filter rules, engine-neutral: every engine feeds it Arrow batches and keeps the rows it clears.

Pass 1 (:meth:`Cascade.learn_all`) reads the number and key of every row of the tables that have both
and notes each person key with an uncleared number (with the reason, for the people count) and, when
some table carries only keys, every key seen beside a number. Pass 2 (:meth:`Cascade.codes`) gives
each row its reason code. The key sets (:class:`optout.person_keys.KeySet`: a bitmap for dense integer
keys) grow batch by batch in pass 1, so their memory follows the people, never the rows.

Since pass 1 saw every numbered row, a keyed row in pass 2 is removed exactly when its key is uncleared:
only those rows (and rows without a key) have their own number classified again. The counts of
pass 1 and 2 must agree, which also catches a file changed between the passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from optout.clearance import (
    CODE_COUNT,
    KEEP,
    CheckResultLike,
    Clearance,
    Reason,
    count_codes,
    counts_by_reason,
    no_removals,
)
from optout.errors import InputError, NoVersionError
from optout.exemptions import ExemptView
from optout.manifest import TableReport
from optout.nhs_number import can_hold, names_for_message, normalise
from optout.person_keys import KeyKind, KeySet, decimal_text, present, unique_keys
from optout.pseudonym import PseudonymClearance, check_matches, load_key
from optout.resolver import Reader
from optout.rows import select
from optout.spec import ExtractSpec, TableSpec
from optout.streams import map_ahead

TABLE_CHANGED = "the table changed while it was being filtered; rerun when nothing is writing to it"


@dataclass(frozen=True)
class _Examined:
    """What pass 1 found in one batch: computed on any thread, noted in order on the caller's."""

    bad: int
    bad_keys: pa.Array | None
    bad_codes: np.ndarray
    seen: pa.Array | None


@dataclass
class _Tally:
    table: TableSpec
    codes: np.ndarray = field(default_factory=lambda: np.zeros(CODE_COUNT, dtype=np.int64))
    own_bad_learned: int = 0
    own_bad_seen: int = 0

    @property
    def rows_in(self) -> int:
        return int(self.codes.sum())


class Cascade:
    """One run's decisions over one spec and one check result."""

    def __init__(
        self,
        spec: ExtractSpec,
        check_result: CheckResultLike,
        key_types: dict[str, pa.DataType],
        *,
        secret: Reader | None = None,
    ) -> None:
        """:param secret: reads a pseudonymisation key kept in a connection (see :mod:`optout.resolver`)."""
        self.spec = spec
        self.clearance = Clearance(check_result)
        # Pseudonymised tables match keyed hashes of the cohort instead of numbers.
        self._clearances: dict[str, Clearance | PseudonymClearance] = {
            table.name: PseudonymClearance(check_result, load_key(table.pseudonymised, connection_secret=secret))
            for table in spec.tables
            if table.pseudonymised is not None
        }
        self.kind = KeyKind.of(key_types.values())
        self._tallies = {table.name: _Tally(table) for table in spec.tables}
        self._needs_seen = any(table.person_key and not table.nhs_number for table in spec.tables)
        self._bad_keys: list[pa.Array] = []
        self._bad_codes: list[np.ndarray] = []
        self._unseen: list[pa.Array] = []
        self._bad_numbers: list[np.ndarray] = []
        self._bad_number_codes: list[np.ndarray] = []
        self._bad = KeySet(kind=self.kind)
        self._known = KeySet(kind=self.kind) if self._needs_seen else None
        self._learnt = False
        self._people_by_key: Future[np.ndarray] | None = None
        # Consent and rows without a number (optout.exemptions): what they keep is counted for the manifest.
        self._exempt = check_result if isinstance(check_result, ExemptView) else None

    @staticmethod
    def learns_from(table: TableSpec) -> bool:
        """Pass 1 reads the tables with both a number and a key."""
        return bool(table.nhs_number and table.person_key)

    def learn_all(self, batches_of: Callable[[TableSpec], Iterable[pa.RecordBatch]]) -> None:
        """Pass 1 over every table with both columns, then build the key indexes.

        ``batches_of(table)`` streams a table's number and key columns. Batches are examined on two
        threads (NumPy and Arrow release the GIL) and noted in order.
        """
        for table in self.spec.tables:
            if self.learns_from(table):
                for found in map_ahead(partial(self._examine, table), batches_of(table)):
                    self._note(table, found)
        self._finish_learning()

    def _examine(self, table: TableSpec, batch: pa.RecordBatch) -> _Examined:
        """The keys of rows whose number is not cleared (and every key, when a table carries only keys)."""
        assert table.nhs_number and table.person_key
        codes = self.clearance_of(table).codes(batch.column(table.nhs_number))
        keys = self.kind.column(batch.column(table.person_key))
        bad = codes != KEEP
        bad_keyed = np.flatnonzero(bad & present(keys))
        return _Examined(
            bad=int(np.count_nonzero(bad)),
            bad_keys=keys.take(pa.array(bad_keyed)) if len(bad_keyed) else None,
            bad_codes=codes[bad_keyed],
            seen=keys if self._needs_seen else None,  # the key set takes repeats at little cost
        )

    def _note(self, table: TableSpec, found: _Examined) -> None:
        self._tallies[table.name].own_bad_learned += found.bad
        if found.bad_keys is not None:
            self._bad.add(found.bad_keys)
            self._bad_keys.append(found.bad_keys)
            self._bad_codes.append(found.bad_codes)
        if found.seen is not None:
            assert self._known is not None
            self._known.add(found.seen)

    def _finish_learning(self) -> None:
        """Count uncleared people by their first reason on a thread of its own.

        Pass 2 needs only the key sets: the count (over every uncleared row) runs beside it.
        """
        self._learnt = True
        counting = ThreadPoolExecutor(max_workers=1, thread_name_prefix="optout-count")
        self._people_by_key = counting.submit(_count_people, self._bad_keys, self._bad_codes, self.kind)
        counting.shutdown(wait=False)  # the count still runs; people_removed() waits for it
        self._bad_keys, self._bad_codes = [], []

    def codes(self, table: TableSpec, batch: pa.RecordBatch) -> np.ndarray:
        """Pass 2: the reason code of every row of a batch (0 = keep)."""
        if table.person_key and not self._learnt:
            raise RuntimeError("learn_all() must run before keyed tables are filtered")
        tally = self._tallies[table.name]
        no_number: np.ndarray | None = None
        numbers = batch.column(table.nhs_number) if table.nhs_number else None
        keys = self.kind.column(batch.column(table.person_key)) if table.person_key else None
        if keys is None:
            assert numbers is not None
            codes = self.clearance_of(table).codes(numbers)
            keyless = np.ones(len(codes), dtype=bool)
        else:
            keyed = present(keys)
            codes = np.where(self._bad.contains(keys), Reason.PERSON_REMOVED.code, KEEP).astype(np.uint8)
            keyless = ~keyed
            if numbers is None:
                assert self._known is not None
                unseen = keyed & ~self._known.contains(keys)
                if self._exempt is not None and self._exempt.keeps_unusable:
                    no_number = unseen | keyless  # nobody knows a number for them: they pass
                else:
                    codes[unseen] = Reason.UNCHECKED.code
                    codes[keyless] = Reason.MISSING.code
                    if unseen.any():
                        self._unseen.append(pc.unique(keys.filter(pa.array(unseen))))
            else:
                # Only removed and keyless rows need their own number's reason.
                check = np.flatnonzero((codes != KEEP) | keyless)
                own = self.clearance_of(table).codes(select(numbers, check))
                codes[check] = np.where(own != KEEP, own, codes[check])
                tally.own_bad_seen += int((own != KEEP).sum())
        if numbers is not None:
            self._note_keyless_people(table, numbers, codes, keyless)
        if self._exempt is not None:
            self._note_kept(self._exempt, numbers, keys, codes == KEEP, no_number)
        tally.codes += count_codes(codes)
        return codes

    @staticmethod
    def _note_kept(
        view: ExemptView, numbers: Any, keys: pa.Array | None, kept: np.ndarray, no_number: np.ndarray | None
    ) -> None:
        """Count the rows an exemption kept: a consented person's number the list would have removed, or no
        usable number (in a table of keys only: a key never seen beside a number, or no key)."""
        unusable = kept & no_number if no_number is not None else None
        if numbers is not None:
            found = normalise(numbers)
            if view.consents:
                mine = found.numbers[np.flatnonzero(kept & found.valid)]
                view.tally.consent(mine[view.consent_set.contains(mine, known_valid=True)])
            unusable = kept & ~found.valid if view.keeps_unusable else None
        if unusable is not None and unusable.any():
            rows = pa.array(np.flatnonzero(unusable))
            view.tally.unusable(len(rows), keys.take(rows) if keys is not None else None)

    def clearance_of(self, table: TableSpec) -> Clearance | PseudonymClearance:
        return self._clearances.get(table.name, self.clearance)

    def _note_keyless_people(self, table: TableSpec, numbers: pa.Array, codes: np.ndarray, keyless: np.ndarray) -> None:
        removed = np.flatnonzero(keyless & (codes != KEEP))
        if len(removed):
            self._bad_numbers.append(self.clearance_of(table).numbers(select(numbers, removed)))
            self._bad_number_codes.append(codes[removed])

    def reports(self) -> list[TableReport]:
        """Per-table counts (no file or hash yet); refuses when pass 1 and 2 disagree."""
        reports = []
        for tally in self._tallies.values():
            table = tally.table
            if self.learns_from(table) and tally.own_bad_seen != tally.own_bad_learned:
                raise InputError(TABLE_CHANGED, path=table.path)
            if table.pseudonymised is not None:
                own = counts_by_reason(tally.codes)
                kept = int(tally.codes[KEEP] + tally.codes[Reason.PERSON_REMOVED.code])
                check_matches(own, table=table.name, config=table.pseudonymised, kept=kept)
            report = unfiltered_report(table, tally.rows_in, None)
            reports.append(replace(report, rows_out=int(tally.codes[KEEP]), removed=counts_by_reason(tally.codes)))
        return reports

    def people_removed(self) -> dict[str, int]:
        """Distinct people removed by reason: by key, then by NHS number for rows without a key."""
        if self._people_by_key is None:
            raise RuntimeError("learn_all() must run before people are counted")
        people = self._people_by_key.result().copy()
        if self._unseen:
            people[Reason.UNCHECKED.code] += len(unique_keys(self._unseen, self.kind))
        if self._bad_numbers:
            numbers = np.concatenate(self._bad_numbers)
            valid = numbers != 0
            codes = np.concatenate(self._bad_number_codes)[valid]
            people += _count_people([pa.array(numbers[valid])], [codes], KeyKind.INTEGER)
        return counts_by_reason(people)


def _count_people(keys: list[pa.Array], codes: list[np.ndarray], kind: KeyKind) -> np.ndarray:
    """People (distinct keys) per code, each counted once under their highest-priority (lowest) code.

    Integer keys, and text keys that are plain decimal integers, are sorted by key, then code, and each
    key's first row counted: a group-by's hash table would cost tens of bytes per key, the sort a few.
    """
    if not keys:
        return count_codes(np.zeros(0, dtype=np.uint8))
    all_codes = np.concatenate(codes)
    every = pa.concat_arrays(keys)
    if kind is KeyKind.TEXT:
        decimal = decimal_text(every)
        table = pa.table(
            {"key": every.filter(pc.invert(decimal)), "code": pa.array(all_codes).filter(pc.invert(decimal))}
        )
        grouped = table.group_by("key", use_threads=False).aggregate([("code", "min")])
        counts = count_codes(grouped.column("code_min").to_numpy().astype(np.uint8))
        return counts + _count_people(
            [every.filter(decimal).cast(pa.int64())],
            [all_codes[decimal.to_numpy(zero_copy_only=False)]],
            KeyKind.INTEGER,
        )
    values = every.to_numpy()
    order = np.lexsort((all_codes, values))
    values = values[order]
    first = np.ones(len(values), dtype=bool)
    first[1:] = values[1:] != values[:-1]
    return count_codes(all_codes[order][first])


def key_types(spec: ExtractSpec, schemas: dict[str, pa.Schema]) -> dict[str, pa.DataType]:
    """Check that every named column exists; return the type of each table's person key column."""
    found = {}
    for table in spec.tables:
        schema = schemas[table.name]
        for column in columns_of(table):
            if column not in schema.names:
                raise InputError(
                    f"no column {column!r}; the table has: {names_for_message(schema.names)}",
                    path=table.path,
                    field=column,
                )
        if table.person_key:
            kind = schema.field(table.person_key).type
            if not can_hold(kind):  # a list or struct of keys is not one person's key
                raise InputError(
                    f"the person key column has type {kind}; keys are text or whole numbers",
                    path=table.path,
                    field=table.person_key,
                )
            found[table.name] = kind
    return found


def columns_of(table: TableSpec) -> list[str]:
    """The columns pass 1 reads."""
    return [name for name in (table.nhs_number, table.person_key) if name]


def unfiltered_report(table: TableSpec, rows: int, sha256: str | None) -> TableReport:
    """The report of a table copied unfiltered: every row out, none removed."""
    return TableReport(
        name=table.name,
        file=table.output_name,
        format=table.format.value,
        rows_in=rows,
        rows_out=rows,
        removed=no_removals(),
        sha256=sha256,
    )


def require_check(spec: ExtractSpec, check_result: CheckResultLike | None) -> None:
    """Fail closed: a secondary-use extract is never written without a check result."""
    if spec.filtered and check_result is None:
        raise NoVersionError(f"extract {spec.name!r} is for {spec.purpose.value}: it needs an opt-out check result")
