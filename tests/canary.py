"""A canary cohort for the no-value-in-any-message tests: distinct valid NHS numbers and distinctive names
placed in every column of every table (and in header cells that are really data), and a scan of text
and files for any of them, in any of the shapes the normaliser reads (plain, spaced, dashed)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from optout.nhs_number import synthetic

NUMBERS = [int(n) for n in synthetic(8, start=999_640_000)]
CLEARED, OPTED_OUT = NUMBERS[:5], NUMBERS[5:]
NAMES = ["Zebedee Canarywhistle", "Ottoline Quenchfeather", "Barnaby Thistlewick"]


def shapes(number: int) -> list[str]:
    text = f"{number:010d}"
    return [text, f"{text[:3]} {text[3:6]} {text[6:]}", f"{text[:3]}-{text[3:6]}-{text[6:]}"]


_FIND = re.compile(
    "|".join([re.escape(s) for n in NUMBERS for s in shapes(n)] + [re.escape(w) for n in NAMES for w in n.split()]),
    re.IGNORECASE,
)


def found_in(text: str | bytes) -> list[str]:
    """Every canary value in ``text`` (empty: clean)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return sorted(set(_FIND.findall(text)))


def found_in_files(paths: Iterable[Path]) -> dict[str, list[str]]:
    """Every file (of those given, recursively for folders) that holds a canary value, with what it holds."""
    leaks: dict[str, list[str]] = {}
    for root in paths:
        for path in [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()):
            hits = found_in(path.read_bytes())
            if hits:
                leaks[str(path)] = hits
    return leaks


def rows(count: int = 6) -> list[list[str]]:
    """Rows with a canary in every column: the number, a name, free text with both, a next of kin."""
    return [
        [
            f"{NUMBERS[i % len(NUMBERS)]:010d}",
            NAMES[i % len(NAMES)],
            f"seen with {NAMES[(i + 1) % len(NAMES)]}, kin {shapes(NUMBERS[(i + 2) % len(NUMBERS)])[1]}",
            f"{NUMBERS[(i + 3) % 5]}",
        ]
        for i in range(count)
    ]


HEADER = ["nhs_number", "name", "notes", "kin"]


def write_csv(path: Path, *, header: bool = True, extra: str = "") -> Path:
    """A CSV of canary rows; without ``header`` its first row is data (what a header row would be)."""
    lines = [",".join(HEADER)] if header else []
    lines += [",".join(f'"{cell}"' if "," in cell else cell for cell in row) for row in rows()]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def write_parquet(path: Path, *, names_are_data: bool = False) -> Path:
    data = list(zip(*rows(), strict=True))
    names = [cell for cell in rows()[0]] if names_are_data else HEADER
    pq.write_table(pa.table({name: list(column) for name, column in zip(names, data, strict=True)}), path)
    return path


def seed(store: object, age: timedelta = timedelta(hours=1)) -> int:
    """A published version clearing ``CLEARED`` of the canary cohort (``store`` is an ``optout.store.Store``)."""
    import numpy as np

    cohort = np.array(sorted(NUMBERS), dtype=np.int64)
    version = store.record_request(cohort)  # type: ignore[attr-defined]
    store.import_reply(  # type: ignore[attr-defined]
        version.id, np.array(sorted(CLEARED), dtype=np.int64), checked_at=datetime.now(UTC) - age
    )
    return int(version.id)
