"""Test support for the filter tests: a check result held in memory and a small messy extract."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from optout.nhs_number import check_digit_ok, synthetic
from optout.store import CheckResult, VersionInfo


def valid_numbers(count: int, start: int = 999_000_000) -> np.ndarray:
    """The first ``count`` valid numbers from a nine-digit prefix on (test-range style)."""
    return synthetic(count, start)


def make_check_result(
    cohort: np.ndarray, cleared: np.ndarray, version: int = 7, checked_at: datetime | None = None
) -> CheckResult:
    """A published version held in memory: what the store's ``load`` returns, without a database."""
    checked_at = checked_at or datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    cohort, cleared = np.sort(np.asarray(cohort)), np.sort(np.asarray(cleared))
    info = VersionInfo(
        id=version,
        local_id=f"TEST-{version}",
        status="published",
        request_sha256="0" * 64,
        requested_at=checked_at,
        checked_at=checked_at,
        published_at=checked_at,
        cohort_count=len(cohort),
        cleared_count=len(cleared),
        note=None,
    )
    return CheckResult(info, cohort, cleared)


N = valid_numbers(10)  # N[0..5] cleared, N[6], N[7] opted out, N[8], N[9] never sent (unchecked)
BAD_DIGIT = int(N[0]) + 1 if not check_digit_ok(np.array([N[0] + 1]))[0] else int(N[0]) + 2


def check_result(version: int = 7) -> CheckResult:
    return make_check_result(N[:8], N[:6], version)


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
