"""Test support for the filter tests: a check result built in memory and a small messy extract."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from optout.lookup import NumberSet
from optout.nhs_number import check_digit_ok


def valid_numbers(count: int, start: int = 999_000_000) -> np.ndarray:
    """The first ``count`` valid numbers from a nine-digit prefix on (test-range style)."""
    prefixes = np.arange(start, start + count * 2, dtype=np.int64)
    candidates = (prefixes[:, None] * 10 + np.arange(10)).ravel()
    return candidates[check_digit_ok(candidates)][:count]


@dataclass(frozen=True)
class Info:
    id: int
    checked_at: datetime


@dataclass(frozen=True)
class FakeCheckResult:
    """Stands in for ``optout.store.CheckResult``: what filtering reads of it."""

    info: Info
    cohort: np.ndarray
    cleared: np.ndarray

    @cached_property
    def cleared_set(self) -> NumberSet:
        return NumberSet(self.cleared)

    @cached_property
    def cohort_set(self) -> NumberSet:
        return NumberSet(self.cohort)


N = valid_numbers(10)  # N[0..5] cleared, N[6], N[7] opted out, N[8], N[9] never sent (unchecked)
BAD_DIGIT = int(N[0]) + 1 if not check_digit_ok(np.array([N[0] + 1]))[0] else int(N[0]) + 2


def check_result(version: int = 7) -> FakeCheckResult:
    return FakeCheckResult(Info(version, datetime(2025, 1, 6, 9, 0, tzinfo=UTC)), np.sort(N[:8]), np.sort(N[:6]))


def spaced(number: int) -> str:
    text = str(number)
    return f" {text[:3]} {text[3:6]} {text[6:]} "


PATIENTS = (
    # pid, nhs_number (messy text), note (quoted newlines and embedded quotes)
    ("p1", spaced(N[0]), 'said "fine"'),
    ("p2", f"{str(N[1])[:3]}-{str(N[1])[3:6]}-{str(N[1])[6:]}", "line one\nline two"),
    ("p3", str(N[6]), "opted out"),
    ("p4", "", "missing"),
    ("p5", "12345", "malformed, with comma"),
    ("p6", str(BAD_DIGIT), "bad check digit"),
    ("p7", str(N[8]), "never sent"),
    ("p8", str(N[2]), "cleared row of a person with an opted-out row"),
    ("p8", str(N[7]), "the opted-out row"),
    ("p9", str(N[3]), "duplicated person row"),
    ("p9", str(N[3]), "duplicated person row"),
)
# pid as text, NHS number as int64 with a null: kept p1, p9; p3 and p8 removed as people.
EVENTS = (("p1", int(N[0])), ("p3", int(N[6])), ("p9", int(N[3])), ("p8", int(N[2])), ("p10", None))
NOTES = ("p1", "p3", "p8", "p99", "", "p9")  # key-only: p99 never seen beside a number, "" has no key

SPEC = """\
name: test extract
purpose: research
tables:
  - name: patients
    path: patients.csv
    nhs_number: nhs_number
    person_key: pid
  - name: events
    path: events.parquet
    nhs_number: nhs
    person_key: pid
  - name: notes
    path: notes.csv
    person_key: pid
"""


def write_extract(folder: Path, spec_text: str = SPEC) -> Path:
    """Write the three tables and their spec into ``folder``; return the spec's path."""
    folder.mkdir(parents=True, exist_ok=True)
    patients = pa.table({name: [row[i] for row in PATIENTS] for i, name in enumerate(("pid", "nhs_number", "note"))})
    pa.csv.write_csv(patients, folder / "patients.csv")
    events = pa.table(
        {
            "pid": [pid for pid, _ in EVENTS],
            "nhs": pa.array([number for _, number in EVENTS], pa.int64()),
            "when": pa.array([datetime(2024, 1, day + 1) for day in range(len(EVENTS))], pa.timestamp("ms")),
            "score": pa.array([1.5, 2.0, None, 4.25, 5.0], pa.float32()),
        }
    )
    pq.write_table(events, folder / "events.parquet", compression="zstd")
    pa.csv.write_csv(
        pa.table({"pid": list(NOTES), "text": [f"note {i}" for i in range(len(NOTES))]}), folder / "notes.csv"
    )
    spec = folder / "spec.yaml"
    spec.write_text(spec_text)
    return spec
