"""The leak scan on the inputs' undeclared columns, at filter time: a number the filter would not look at
(a mother's or next of kin's number, one in free text, a key-only table that carries numbers) refuses
the extract before anything is written.

The filter removes rows by the columns the spec declares; a valid NHS number elsewhere in a row, not
cleared in the version used, would go out with a kept row. It cannot be removed on its own (whose
number is it? which rows does it bind?), so the extract is refused (:class:`UndeclaredNumbers`, exit 1)
naming table, column and how many, never the number. Cleared numbers elsewhere are fine. The spec may
exclude a column, by name with a reason (``scan_exclude``); the declared number and key columns are the
filter's own and are not scanned here (the proof scans every output column). The manifest records that
the scan ran, what it refuses, and every exclusion with its reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from optout.errors import PolicyRefusal
from optout.leak_scan import RAW_BYTES, ColumnLeak, LeakScan
from optout.nhs_number import shown_as_name

if TYPE_CHECKING:
    import pyarrow as pa

    from optout.lookup import NumberSet
    from optout.spec import ExtractSpec

ON_FINDING = "refuse the extract"  # what the manifest says happens to an input with uncleared numbers


class UndeclaredNumbers(PolicyRefusal):
    """An input's undeclared column holds valid NHS numbers not cleared in the version used."""


def excluded_columns(spec: ExtractSpec) -> dict[str, set[str]]:
    """``{table: {column, ...}}`` the spec excludes from every scan (input and output)."""
    return {table.name: {item.column for item in table.scan_exclude} for table in spec.tables if table.scan_exclude}


def exclusions(spec: ExtractSpec) -> list[dict[str, str]]:
    """Every exclusion with its reason, as the manifest, the ledger and the page show them."""
    return [
        {"table": table.name, "column": item.column, "reason": item.reason}
        for table in spec.tables
        for item in table.scan_exclude
    ]


def column_label(name: str) -> str:
    """A column's name for a report, unless the name itself could be a value (a header that is data)."""
    return name if name == RAW_BYTES or shown_as_name(name) else "a column named like a value from the data"


class InputScan:
    """Every undeclared, not excluded column of every input batch it is given, counted per column."""

    def __init__(self, spec: ExtractSpec, cleared: NumberSet) -> None:
        skip = excluded_columns(spec)
        for table in spec.tables:
            declared = {name for name in (table.nhs_number, table.person_key) if name}
            skip[table.name] = skip.get(table.name, set()) | declared
        self._spec = spec
        self._scan = LeakScan(cleared, excluded=skip)
        self._not_scanned: dict[str, str] = {}

    def batch(self, table: str, batch: pa.RecordBatch | pa.Table) -> None:
        self._scan.batch(table, batch)

    def batches(self, table: str, batches: Iterable[pa.RecordBatch]) -> None:
        for batch in batches:
            self._scan.batch(table, batch)

    def counted(self, leaks: Iterable[ColumnLeak]) -> None:
        """Counts made where the data lives (Spark), by the same rule; excluded columns are dropped."""
        self._scan.counted(leaks)

    def not_scanned(self, table: str, why: str) -> None:
        """A table this home cannot read here (the manifest names it and why)."""
        self._not_scanned[table] = why

    def require_clean(self) -> None:
        """Refuse (exit 1) when any undeclared column holds an uncleared number or could not be read."""
        leaks = self._scan.leaks()
        if not leaks:
            return
        where = "; ".join(
            f"{leak.table}.{column_label(leak.column)}: "
            + ("a type the scan cannot read" if leak.unscannable else f"{leak.values} uncleared NHS number(s)")
            for leak in leaks
        )
        raise UndeclaredNumbers(
            f"undeclared columns hold valid NHS numbers that are not cleared in the version used ({where}); "
            "nothing was written. Declare the column as nhs_number, remove it, or exclude it from the scan "
            "in the spec (scan_exclude, with a reason)"
        )

    def summary(self) -> dict[str, Any]:
        """What the manifest records: the behaviour, how much was scanned, exclusions and reasons."""
        return {
            "on_uncleared_number": ON_FINDING,
            "columns_scanned": self._scan.columns_scanned(),
            "uncleared_found": self._scan.total(),
            "excluded": exclusions(self._spec),
            "not_scanned": [{"table": name, "why": why} for name, why in sorted(self._not_scanned.items())],
        }
