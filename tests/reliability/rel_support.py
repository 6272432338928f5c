"""Shared helpers for the reliability tests: synthetic test-range cohorts, the real CLI in a subprocess,
store snapshots, and a scanner that finds NHS numbers (plain, spaced or dashed) in anything written.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from optout.ndop import build_request, is_valid_number, sorted_unique

OPTOUT = str(Path(sys.executable).with_name("optout"))
TEST_RANGE = (9_990_000_000, 9_999_999_999)  # NHS England's test range: never a real person (~900k valid)
WIDE_RANGE = (9_000_000_000, 9_999_999_999)  # for cohorts too big for it: still never issued
_NUMBER_LIKE = re.compile(rb"(?<![0-9])[0-9]{3}[ \-]?[0-9]{3}[ \-]?[0-9]{4}(?![0-9])")


def cohort_numbers(count: int, seed: int = 0) -> np.ndarray:
    """``count`` distinct valid numbers starting 999 (9 for more than 200,000), sorted (int64)."""
    rng = np.random.default_rng(seed)
    span = TEST_RANGE if count <= 200_000 else WIDE_RANGE
    found = np.empty(0, dtype=np.int64)
    while len(found) < count:
        draw = rng.integers(*span, size=12 * count + 16, dtype=np.int64)
        found = sorted_unique(np.concatenate([found, draw[is_valid_number(draw)]]))
    return np.sort(rng.permutation(found)[:count])


def write_cohort(path: Path, numbers: np.ndarray, column: str = "nhs_number") -> Path:
    """A cohort CSV (or Parquet, by extension) with a person key and the numbers as text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {"person_id": pa.array(np.arange(len(numbers), dtype=np.int64)), column: pa.array(numbers.astype(str))}
    )
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pacsv.write_csv(table, path)
    return path


def write_reply(path: Path, cleared: np.ndarray) -> Path:
    """A reply in the service's layout (same as a request: ``number,`` per line)."""
    path.write_bytes(build_request(cleared))
    return path


def cleared_of(cohort: np.ndarray, share_out: float, seed: int) -> np.ndarray:
    """The cohort minus a random ``share_out`` of it (the opted out)."""
    keep = np.random.default_rng(seed).random(len(cohort)) >= share_out
    return cohort[keep]


def cli_env(store_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    if store_url:
        env["OPTOUT_STORE_URL"] = store_url
    return env


def run_cli(
    *args: str | Path, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``optout ARGS`` as a user would; the output is returned, never echoed."""
    return subprocess.run(
        [OPTOUT, *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def spawn_cli(*args: str | Path, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([OPTOUT, *map(str, args)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_after(process: subprocess.Popen, delay: float) -> bool:
    """``kill -9`` the process after ``delay`` seconds; True when it was still running."""
    try:
        process.wait(timeout=delay)
        killed = False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed = True
    process.communicate()
    return killed


@dataclass
class Prepared:
    """A pending request recorded through the CLI, and the files to import its reply."""

    cohort: np.ndarray
    cleared: np.ndarray
    request: Path
    reply: Path


def prepare(
    folder: Path, cohort: np.ndarray, env: Mapping[str, str], *, seed: int, share_out: float = 0.05
) -> Prepared:
    """``optout check request`` for this cohort (a pending version) plus a matching reply file."""
    folder.mkdir(parents=True, exist_ok=True)
    request = folder / "request.dat"
    result = run_cli(
        "check", "request", write_cohort(folder / "cohort.csv", cohort), "--id-column", "nhs_number",
        "--out", request, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cleared = cleared_of(cohort, share_out, seed)
    return Prepared(cohort, cleared, request, write_reply(folder / "reply.dat", cleared))


def store_snapshot(url: str) -> list[tuple[object, ...]]:
    """Every version's row and a digest of its numbers: equal snapshots mean an unchanged store."""
    import hashlib

    from optout.store import Store

    store = Store(url)
    try:
        rows: list[tuple[object, ...]] = []
        for info in store.versions(limit=1000):
            loaded = store.load(info.id)
            digest = hashlib.sha256(loaded.cohort.tobytes() + b"|" + loaded.cleared.tobytes()).hexdigest()
            rows.append((info.id, info.status, info.cohort_count, info.cleared_count, info.checked_at, digest))
        return rows
    finally:
        store.dispose()


def assert_version_complete(url: str, version_id: int, cohort: np.ndarray, cleared: np.ndarray) -> None:
    """The version loads whole and holds exactly these numbers."""
    from optout.store import Store

    store = Store(url)
    try:
        loaded = store.load(version_id)
    finally:
        store.dispose()
    assert np.array_equal(loaded.cohort, sorted_unique(cohort))
    assert np.array_equal(loaded.cleared, sorted_unique(cleared))


def find_numbers(data: bytes | str, cohort: np.ndarray) -> int:
    """How many cohort NHS numbers ``data`` holds, written plain, spaced (3-3-4) or dashed."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    found = [int(re.sub(rb"[ \-]", b"", match)) for match in _NUMBER_LIKE.findall(raw)]
    if not found:
        return 0
    return int(np.isin(np.array(found, dtype=np.int64), cohort).sum())


def scan_tree(roots: Iterable[Path], cohort: np.ndarray, *, skip: Iterable[Path] = ()) -> dict[str, int]:
    """Files under ``roots`` (except those in or under ``skip``) holding cohort numbers, with counts."""
    skipped = {path.resolve() for path in skip}
    hits = {}
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            resolved = path.resolve()
            if path.is_file() and not skipped & {resolved, *resolved.parents}:
                count = find_numbers(path.read_bytes(), cohort)
                if count:
                    hits[str(path)] = count
    return hits


def clean_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    """Exit ``code`` with one ``optout:`` message containing every needle, and never a traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    message = result.stderr
    for needle in needles:
        assert needle in message, (needle, message)
