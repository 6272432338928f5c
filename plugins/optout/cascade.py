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
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa

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
from optout.person_keys import KeyKind, KeySet, present
from optout.pseudonym import PseudonymClearance, check_matches, load_key
from optout.resolver import Reader
from optout.rows import select
from optout.spec import ExtractSpec, TableSpec
from optout.streams import map_ahead

EXAMINE_ROWS = 1 << 18  # rows classified at a time in pass 1 (see _codes_in_steps)
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
        # Each person removed, in one key set per reason (index = code): a bitmap for dense integer keys, so
        # memory follows the people, not the rows; the people count is taken from them at the end.
        self._removed_by_code = [KeySet(kind=self.kind) for _ in range(CODE_COUNT)]
        self._keyless_by_code = [KeySet(kind=KeyKind.INTEGER) for _ in range(CODE_COUNT)]  # rows without a key
        self._bad = KeySet(kind=self.kind)
        self._known = KeySet(kind=self.kind) if self._needs_seen else None
        self._learnt = False
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
        self._learnt = True

    def _examine(self, table: TableSpec, batch: pa.RecordBatch) -> _Examined:
        """The keys of rows whose number is not cleared (and every key, when a table carries only keys)."""
        assert table.nhs_number and table.person_key
        codes = _codes_in_steps(self.clearance_of(table), batch.column(table.nhs_number))
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
            _add_by_code(self._removed_by_code, found.bad_keys, found.bad_codes)
        if found.seen is not None:
            assert self._known is not None
            self._known.add(found.seen)

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
                        self._removed_by_code[Reason.UNCHECKED.code].add(keys.filter(pa.array(unseen)))
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
            numbers = self.clearance_of(table).numbers(select(numbers, removed))
            valid = numbers != 0
            _add_by_code(self._keyless_by_code, pa.array(numbers[valid]), codes[removed][valid])

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
        if not self._learnt:
            raise RuntimeError("learn_all() must run before people are counted")
        return counts_by_reason(_count_people(self._removed_by_code) + _count_people(self._keyless_by_code))


def _codes_in_steps(clearance: Clearance | PseudonymClearance, numbers: pa.Array) -> np.ndarray:
    """Reason codes of a column, :data:`EXAMINE_ROWS` at a time: classifying builds several times the
    column's size (normalised numbers, masks), on each of two threads; the codes are a byte a row."""
    if len(numbers) <= EXAMINE_ROWS:
        return clearance.codes(numbers)
    steps = range(0, len(numbers), EXAMINE_ROWS)
    return np.concatenate([clearance.codes(numbers.slice(start, EXAMINE_ROWS)) for start in steps])


def _add_by_code(sets: list[KeySet], keys: pa.Array, codes: np.ndarray) -> None:
    """Note each key in the set of its row's reason code."""
    found = np.flatnonzero(np.bincount(codes, minlength=CODE_COUNT))
    for code in found:
        sets[code].add(keys if len(found) == 1 else keys.filter(pa.array(codes == code)))


def _count_people(sets: list[KeySet]) -> np.ndarray:
    """People (distinct keys) per code, each counted once under their highest-priority (lowest) code:
    the keys of each code's set that no lower code's set holds."""
    counts = np.zeros(CODE_COUNT, dtype=np.int64)
    for code in range(1, CODE_COUNT):
        counts[code] = sets[code].count_outside(sets[1:code])
    return counts


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
