"""The file formats an extract may use, named by the file's extension.

Imports nothing heavy: the spec checks a table's format on load without loading Arrow.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

from optout.errors import InputError

BATCH_ROWS = 1 << 20  # one default Parquet row group: large enough to amortise per-batch overhead
BATCH_BYTES = 32 << 20  # ...but wide rows (long text, many columns) get fewer rows, so memory stays bounded


class Format(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


def format_of(path: str | Path, *, field: str | None = None, source: str | Path | None = None) -> Format:
    """The format named by a file's extension; anything but ``.csv`` and ``.parquet`` is refused."""
    suffix = Path(path).suffix.lower().lstrip(".")
    try:
        return Format(suffix)
    except ValueError:
        raise InputError(
            f"cannot tell the format of {Path(path).name!r}: name it .csv or .parquet",
            path=source if source is not None else path,
            field=field,
        ) from None


def require_columns(path: Path, names: Sequence[str], wanted: Sequence[str] | None) -> None:
    """Refuse a named column that the file lacks (the error names the file and the column)."""
    for column in wanted or ():
        if column not in names:
            from optout.nhs_number import names_for_message  # the error path only: the spec loads without Arrow

            raise InputError(f"no column {column!r}; the file has: {names_for_message(names)}", path=path, field=column)
