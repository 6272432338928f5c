"""The check result staged in the database: the cleared and the opted-out numbers (or, for a
pseudonymised table, the cohort's keyed hashes under its key) as scratch tables to join against."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from optout.clearance import Reason
from optout.homes.sql.expressions import NumberColumn
from optout.homes.sql.scratch import Scratch
from optout.pseudonym import HEX_CHARS, hashed_cohort, hex_digests, load_key
from optout.spec_pseudonym import Pseudonymisation

if TYPE_CHECKING:
    from optout.spec import TableSpec


@dataclass
class Staged:
    """Scratch tables holding the cleared and opted-out numbers (or hashes) of one check result."""

    cleared: sa.Table
    opted_out: sa.Table

    def code(self, number: NumberColumn) -> sa.ColumnElement[int]:
        """Reason code of a row known not to be cleared."""
        return sa.case((self.contains(self.opted_out, number), Reason.OPTED_OUT.code), else_=number.reason)

    @staticmethod
    def contains(table: sa.Table, number: NumberColumn) -> sa.ColumnElement[bool]:
        return sa.exists().where(table.c.n == number.key)


class Staging:
    """Stages each set once per run: the numbers, and the hashes once per key."""

    def __init__(self, scratch: Scratch, check_result: Any, secret: Callable[[str], str | None] | None) -> None:
        self.scratch = scratch
        self.check = check_result
        self.secret = secret
        self._staged: dict[Any, Staged] = {}

    def staged(self, table: TableSpec) -> Staged:
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

    def _stage(self, role: str, kind: Any, cleared: np.ndarray, opted_out: np.ndarray) -> Staged:
        tables = []
        primary = self.scratch.dialect.indexed_sets
        for name, values in ((f"{role}_cleared", cleared), (f"{role}_opted_out", opted_out)):
            table = self.scratch.table(name, sa.Column("n", kind, primary_key=primary, autoincrement=False))
            if len(values):
                self.scratch.dialect.load(self.scratch.conn, table, values)
            tables.append(table)
        return Staged(*tables)


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
