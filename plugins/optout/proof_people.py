"""Who may appear in a filtered extract's outputs, learnt again from its inputs, for the proof.

The filter's cascade decides who is removed; the proof must not take its word for it. So the inputs'
number and key columns are read again (a Parquet input by the scan's own reader) and the decision is
taken here, independently, with the filter's primitives only (clearance codes, key comparison, key
indexes). Counts come out, never a key.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from optout.clearance import KEEP, CheckResultLike, Clearance
from optout.errors import InputError
from optout.homes.files.formats import Format, format_of, require_columns
from optout.homes.files.read import read_batches, schema_of
from optout.leak_scan import WholeCells, parquet_batches
from optout.streams import map_ahead, prefetch

if TYPE_CHECKING:
    from optout.resolver import Reader
    from optout.spec import ExtractSpec, TableSpec

_SLICE_ROWS = 1 << 16  # rows classified at once


class People:
    """Who may appear in the outputs, learnt again from the inputs with the filter's own primitives.

    A key is removed when any input row carrying it beside a number is not cleared; a key only tables
    carry must also have been seen beside a number. Key comparison (integers, or trimmed text) and the
    key indexes are the filter's (``KeyKind``, ``KeySet``); the decision is taken here, independently.
    """

    def __init__(self, spec: ExtractSpec, check_result: CheckResultLike, secret: Reader | None) -> None:
        from optout.cascade import key_types
        from optout.person_keys import KeyKind, KeySet
        from optout.pseudonym import PseudonymClearance, load_key

        plain = Clearance(check_result)
        self._cleared = check_result.cleared_set
        self._keeps_unusable = bool(getattr(check_result, "keeps_unusable", False))  # as Clearance reads it
        self._clearances: dict[str, Any] = {
            t.name: PseudonymClearance(check_result, load_key(t.pseudonymised, connection_secret=secret))
            if t.pseudonymised
            else plain
            for t in spec.tables
        }
        self.kind = KeyKind.INTEGER
        if any(t.person_key for t in spec.tables):  # without keys there is nobody to learn
            schemas = {t.name: schema_of(_input_path(t), t.csv) for t in spec.tables}
            self.kind = KeyKind.of(key_types(spec, schemas).values())
        needs_seen = any(t.person_key and not t.nhs_number for t in spec.tables)
        self.removed = KeySet(kind=self.kind)
        self.known = KeySet(kind=self.kind) if needs_seen else None
        for table in spec.tables:
            if not (table.nhs_number and table.person_key):
                continue
            batches = prefetch(_input_batches(table, [table.nhs_number, table.person_key]))
            for removed, keys in map_ahead(partial(self._keys_of, table, needs_seen), batches):
                self.removed.add(removed)  # a set of repeats is no larger: no batch is made distinct first
                if self.known is not None and keys is not None:
                    self.known.add(keys)

    def _keys_of(self, table: TableSpec, all_keys: bool, batch: pa.RecordBatch) -> tuple[pa.Array, pa.Array | None]:
        """A batch's keys beside an uncleared number (and all its keys, if asked), repeats and nulls kept: the
        key sets drop them as cheaply as a hash table would."""
        assert table.nhs_number and table.person_key
        keys = self.kind.column(batch.column(table.person_key))
        uncleared = self.codes(table, batch.column(table.nhs_number)) != KEEP
        return keys.filter(pa.array(uncleared)), keys if all_keys else None

    def codes(self, table: TableSpec, numbers: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Clearance codes, a slice at a time: the normaliser's scratch is many bytes per byte of text, so a
        whole batch at once cost hundreds of MiB."""
        clearance = self._clearances[table.name]
        return np.concatenate(
            [
                np.asarray(clearance.codes(numbers.slice(start, _SLICE_ROWS)))
                for start in range(0, len(numbers), _SLICE_ROWS)
            ]
            or [np.zeros(0, dtype=np.uint8)]
        )

    def uncleared_of(self, rows: int, cells: WholeCells) -> int:
        """Rows of a plain number column not holding a cleared number, from the leak scan's reading of its
        cells (``cells``: those read whole as valid numbers): the column is normalised once, not twice.
        A row without a valid number is uncleared, unless the version keeps unusable numbers (as
        :class:`Clearance` codes them)."""
        numbers = cells.all_numbers()
        cleared = int(np.count_nonzero(self._cleared.contains(numbers, known_valid=True)))
        return (len(numbers) if self._keeps_unusable else rows) - cleared

    def removed_rows(self, table: TableSpec, keys: pa.Array | pa.ChunkedArray) -> int:
        """Rows whose key is a removed person's, or (in a key-only table) unknown or blank."""
        keys = self.kind.column(keys)
        hit = self.removed.contains(keys)
        if not table.nhs_number:
            assert self.known is not None
            hit |= ~self.known.contains(keys)  # unseen or blank keys: nobody checked them
        return int(np.count_nonzero(hit))


def _input_batches(table: TableSpec, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """A Parquet input through the scan's own reader, which streams column chunks (the files' reader
    pre-buffers a row group's: 171 MiB against 38 for two columns of 10M rows); a CSV input through the
    files' reader."""
    path = _input_path(table)
    if format_of(path) is not Format.PARQUET:
        return read_batches(path, columns=columns, dialect=table.csv)
    require_columns(path, schema_of(path, table.csv).names, columns)
    return parquet_batches(path, columns, dictionaries=False)


def _input_path(table: TableSpec) -> Path:
    if table.path is None:
        raise InputError(
            "validation re-reads the inputs to find removed people; give the table's path", field=f"{table.name}.path"
        )
    return table.path
