"""``optout spec check``: what a spec leaves out, found by reading its tables without filtering them.

A spec can mislead by omission: a column of NHS numbers nobody declared (a next of kin's, a previous
number, one in free text), a table that carries numbers but declares only a person key, a table that no
key links to the cohort (every row of it would be removed as unchecked). This reads every table the
spec names (or its first ``rows`` rows) and counts, per column, the values that read as valid NHS
numbers, with the leak scan's own finder (:mod:`optout.leak_scan`): counts and column names only,
never a value, and a column whose *name* could be a value (a number, a full name: a header that is
really data) is shown by its position.

Needs attention (exit 1): an undeclared, not excluded column holding valid numbers; a declared column
the table lacks; a table with no link to the cohort. Listed without needing attention: tables that
declare only a person key (they are filtered by their key's link), excluded columns, tables it cannot
read here (Spark tables).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from optout.leak_scan import Unscannable, uncleared_values
from optout.lookup import NumberSet
from optout.nhs_number import shown_as_name

if TYPE_CHECKING:
    from collections.abc import Iterable

    import pyarrow as pa

    from optout.spec import ExtractSpec, TableSpec


@dataclass(frozen=True)
class ColumnCount:
    """One column and how many of its values read as valid NHS numbers (``declared``: the spec's column)."""

    column: str
    numbers: int
    declared: bool = False
    excluded: bool = False


@dataclass
class TableCheck:
    name: str
    rows_read: int = 0
    columns: list[ColumnCount] = field(default_factory=list)
    key_only: bool = False
    linked: bool = True
    missing: list[str] = field(default_factory=list)  # declared columns the table lacks
    not_read: str | None = None

    @property
    def undeclared(self) -> list[ColumnCount]:
        """Columns the spec neither declares nor excludes, holding valid NHS numbers."""
        return [c for c in self.columns if c.numbers and not c.declared and not c.excluded]

    @property
    def needs_attention(self) -> bool:
        return bool(self.undeclared or self.missing or not self.linked)

    def lines(self) -> list[str]:
        """The table's findings in words, counts and names only."""
        found = [f"{self.name}: {self.rows_read:,} rows read"]
        if self.not_read:
            found.append(f"  not read here: {self.not_read}")
        for column in self.columns:
            if column.numbers or column.declared:
                role = "declared nhs_number" if column.declared else "excluded" if column.excluded else "UNDECLARED"
                found.append(f"  {column.column}: {column.numbers:,} valid NHS numbers ({role})")
        if self.missing:
            found.append(f"  MISSING declared column(s): {', '.join(self.missing)}")
        if self.key_only:
            found.append("  declares only a person key: its rows are kept by the key's link to a numbered table")
        if not self.linked:
            found.append("  NO LINK to the cohort: no NHS number column and no key a numbered table shares")
        return found


@dataclass
class SpecCheck:
    spec: str
    tables: list[TableCheck]

    @property
    def needs_attention(self) -> bool:
        return any(table.needs_attention for table in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "needs_attention": self.needs_attention,
            "tables": [
                {**asdict(t), "undeclared": [c.column for c in t.undeclared], "needs_attention": t.needs_attention}
                for t in self.tables
            ],
        }


def check_spec(spec: ExtractSpec, *, rows: int | None = None) -> SpecCheck:
    """Read every table of ``spec`` (at most ``rows`` rows each) and report what it finds; filters nothing."""
    from optout.homes import home_for

    home = home_for(spec)
    numbered_keys = any(t.nhs_number and t.person_key for t in spec.tables)
    checks = []
    for table in spec.tables:
        check = TableCheck(table.name, key_only=not table.nhs_number)
        check.linked = bool(table.nhs_number) or numbered_keys
        if spec.engine == "spark" and table.table:
            check.not_read = "a Spark table: its rows are not brought to this machine"
        else:
            _count(table, home.input_batches(table), rows, check)
        checks.append(check)
    return SpecCheck(spec.name, checks)


def _count(table: TableSpec, batches: Iterable[pa.RecordBatch], limit: int | None, check: TableCheck) -> None:
    counts: dict[str, int] = {}
    names: list[str] = []
    for batch in batches:
        if limit is not None and check.rows_read >= limit:
            break
        if limit is not None and check.rows_read + batch.num_rows > limit:
            batch = batch.slice(0, limit - check.rows_read)
        names = batch.schema.names
        check.rows_read += batch.num_rows
        for name, column in zip(names, batch.columns, strict=True):
            counts[name] = counts.get(name, 0) + _numbers(column)
    if not names:
        names = list(counts)
    excluded = {item.column for item in table.scan_exclude}
    check.missing = [
        _label(name, -1) for name in (table.nhs_number, table.person_key) if name and names and name not in names
    ]
    check.columns = [
        ColumnCount(_label(name, index), counts.get(name, 0), name == table.nhs_number, name in excluded)
        for index, name in enumerate(names)
    ]


_NOBODY = NumberSet(np.zeros(0, dtype=np.int64))  # nothing cleared: every valid number counts


def _numbers(column: pa.Array) -> int:
    try:
        return uncleared_values(column, _NOBODY)
    except Unscannable:
        return 0  # a type no NHS number can be read from here; the proof refuses it if it is output


def _label(name: str, index: int) -> str:
    """A column's name, or its position when the name could be a value (a header that is data)."""
    if shown_as_name(name):
        return name
    return f"column {index + 1} (named like data)" if index >= 0 else "a column named like data"
