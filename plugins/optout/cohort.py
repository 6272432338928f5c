"""Read the cohort, the NHS numbers to send to the check, from CSV and Parquet files or a SQL query.

Only valid numbers can be sent (the service rejects a whole file for one bad number), so every value
is normalised and what is dropped is counted, never shown. Files are streamed in batches: only the
numbers themselves are held in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optout import progress
from optout.errors import InputError
from optout.homes.files.read import read_batches
from optout.ndop import sorted_unique
from optout.nhs_number import Normalised, Status, normalise, require_number_column


@dataclass(frozen=True, eq=False)
class Cohort:
    """Sorted unique valid numbers (int64) and how many values of each kind were read.

    ``counts``: ``rows`` read; ``valid``, ``missing``, ``malformed`` and ``bad_check_digit`` values
    (these four add up to ``rows``); ``duplicates``, valid values repeating an earlier one (so
    ``len(numbers) == valid - duplicates``).
    """

    numbers: np.ndarray
    counts: dict[str, int]


def read_cohort(paths: str | Path | Sequence[str | Path], id_column: str) -> Cohort:
    """Read the ``id_column`` of every file (``.csv`` or ``.parquet``, by extension) into one cohort.

    A file without the column is an :class:`InputError` naming the file and the column.
    """
    files = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not files:
        raise InputError("no cohort file given", field=id_column)

    def columns() -> Iterator[Normalised]:
        for path in files:
            with progress.stage(f"cohort {Path(path).name}"):
                for batch in read_batches(path, columns=[id_column]):
                    require_number_column(batch.schema.field(0).type, path=path, column=id_column)
                    progress.advance(batch.num_rows, batch.nbytes)
                    yield normalise(batch.column(0))

    return _collect(columns())


def read_sql_cohort(url: str, query: str, batch_rows: int = 100_000) -> Cohort:
    """The first column of ``query``'s rows, streamed from the database in batches."""
    import sqlalchemy as sa

    from optout import db

    def columns() -> Iterator[Normalised]:
        with db.bound(url) as engine, db.transaction(engine, snapshot=True) as conn:
            result = conn.execution_options(stream_results=True).execute(sa.text(query))
            for rows in result.partitions(batch_rows):
                yield normalise([row[0] for row in rows])

    return _collect(columns())


def combine(cohorts: Sequence[Cohort]) -> Cohort:
    """One cohort from several sources: counts added up, a number in two sources counted as a duplicate."""
    numbers = sorted_unique(np.concatenate([c.numbers for c in cohorts])) if cohorts else np.empty(0, np.int64)
    counts: dict[str, int] = {}
    for cohort in cohorts:
        for key, value in cohort.counts.items():
            counts[key] = counts.get(key, 0) + value
    counts["duplicates"] = counts.get("valid", 0) - len(numbers)
    return Cohort(numbers=numbers, counts=counts)


def _collect(columns: Iterable[Normalised]) -> Cohort:
    found = np.zeros(len(Status), dtype=np.int64)
    parts = []
    for normalised in columns:
        found += np.bincount(normalised.status, minlength=len(Status))
        parts.append(normalised.numbers[normalised.valid])
    numbers = sorted_unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)
    counts = {"rows": int(found.sum())} | {status.name.lower(): int(found[status]) for status in Status}
    counts["duplicates"] = counts["valid"] - len(numbers)
    return Cohort(numbers=numbers, counts=counts)
