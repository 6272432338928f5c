"""Read the cohort, the NHS numbers to send to the check, from CSV and Parquet files.

Only valid numbers can be sent (the service rejects a whole file for one bad number), so every value
is normalised and what is dropped is counted, never shown. Files are streamed in batches: only the
numbers themselves are held in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optout import tabular
from optout.errors import InputError
from optout.nhs_number import Status, normalise, require_number_column


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
    found = np.zeros(len(Status), dtype=np.int64)
    parts = []
    for path in files:
        for batch in tabular.read_batches(path, columns=[id_column]):
            require_number_column(batch.schema.field(0).type, path=path, column=id_column)
            normalised = normalise(batch.column(0))
            found += np.bincount(normalised.status, minlength=len(Status))
            parts.append(normalised.numbers[normalised.valid])
    numbers = np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)
    first = np.ones(len(numbers), dtype=bool)
    np.not_equal(numbers[1:], numbers[:-1], out=first[1:])
    counts = {"rows": int(found.sum())} | {status.name.lower(): int(found[status]) for status in Status}
    counts["duplicates"] = int(len(numbers) - first.sum())
    return Cohort(numbers=numbers[first], counts=counts)
