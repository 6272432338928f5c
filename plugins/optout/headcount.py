"""How many people an extract's outputs hold: the data uses register's "people included".

A person is who the filter's cascade says it is when it counts people removed: "by key, then by NHS
number for rows without a key". So a row carrying a person key counts by its key (compared as the filter
compares keys: integers when every key column is an integer column, else trimmed text), and a row
without one (a table with no key column, or a blank key) counts by its NHS number: the valid number of a
plain column, the hash of a pseudonymised one. The extract's count is the distinct keys of all its
tables plus the distinct numbers of all its keyless rows: when one extract mixes both, a person whose
rows carry a key in one table and none in another is counted in both sets (there is no key to join
them by). A spec always declares one or the other (:mod:`optout.spec`), so every row is somebody's.

Counts stream: keys go into key sets (:class:`optout.person_keys.KeySet`: a bitmap for dense integer
keys, which drops repeats for the cost of a scatter), and each batch's distinct numbers are folded to one
distinct set now and then, so memory is the distinct people, not the rows. Only the count leaves this
module, never a key or number.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from optout.nhs_number import normalise
from optout.person_keys import KeyKind, KeySet, unique_keys
from optout.pseudonym import HEX_CHARS

if TYPE_CHECKING:
    from optout.spec import TableSpec

_FOLD_EVERY = 64  # batches of distinct values held before they are folded into one distinct set
_HASH = f"^[0-9a-f]{{{HEX_CHARS}}}$"


class Headcount:
    """Distinct people across an extract's output tables; ``add`` each batch (from any thread), then ``total``."""

    def __init__(self) -> None:
        self.known = True  # a caller that could not show every output its batches marks the count unknown
        self._lock = threading.Lock()
        self._keys = {kind: KeySet(kind=kind) for kind in KeyKind}  # by the type of the column they came from
        self._sets: dict[str, list[pa.Array]] = {"numbers": [], "hashes": []}

    @staticmethod
    def columns(table: TableSpec) -> list[str]:
        """The columns a person is read from in ``table``: its key and its number, as the spec declares."""
        return [c for c in (table.nhs_number, table.person_key) if c]

    def add(self, table: TableSpec, batch: pa.RecordBatch) -> None:
        """Note the people of one batch of ``table``'s output (which holds at least :meth:`columns`)."""
        keyless = None
        if table.person_key:
            keys = _plain(batch.column(table.person_key))
            kind = KeyKind.INTEGER if pa.types.is_integer(keys.type) else KeyKind.TEXT
            comparable = kind.column(keys)
            with self._lock:
                self._keys[kind].add(comparable)
            keyless = comparable.is_null()
        if not table.nhs_number:
            return
        numbers = _plain(batch.column(table.nhs_number))
        if keyless is not None:
            numbers = numbers.filter(keyless)
        if table.pseudonymised is not None:
            hashed = pc.utf8_lower(pc.utf8_trim_whitespace(numbers.cast(pa.string())))
            self._note("hashes", pc.unique(hashed.filter(pc.fill_null(pc.match_substring_regex(hashed, _HASH), False))))
        else:
            found = normalise(numbers).numbers
            self._note("numbers", pc.unique(pa.array(found[found != 0], type=pa.int64())))

    def total(self) -> int | None:
        """Distinct keys plus distinct numbers of keyless rows; None when the count is marked unknown."""
        if not self.known:
            return None
        integers, text = self._keys[KeyKind.INTEGER], self._keys[KeyKind.TEXT]
        if len(integers) and len(text):  # keys of integer and text columns together compare as text
            text.add(KeyKind.TEXT.column(integers.distinct()))
            integers = KeySet()
        return len(integers) + len(text) + sum(len(_distinct(chunks)) for chunks in self._sets.values())

    def _note(self, kind: str, values: pa.Array) -> None:
        with self._lock:
            chunks = self._sets[kind]
            chunks.append(values)
            if len(chunks) >= _FOLD_EVERY:
                self._sets[kind] = [_distinct(chunks)]


def _distinct(chunks: Iterable[pa.Array]) -> pa.Array:
    """The distinct values of all ``chunks`` (of one type)."""
    chunks = [chunk for chunk in chunks if len(chunk)]
    return unique_keys(chunks, KeyKind.of(chunk.type for chunk in chunks))


def _plain(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.dictionary_decode() if pa.types.is_dictionary(values.type) else values
