"""Benchmark the pseudonymised filter against the plain one on the same extract, in one run.

    .venv/bin/python benchmarks/pseudonym_bench.py                # 10,000,000 rows, 5,000,000 people
    .venv/bin/python benchmarks/pseudonym_bench.py --rows 200000  # quick

One generated extract is written twice as Parquet: with the NHS number (int64) and with its keyed hash
(HMAC-SHA256 lowercase hex, as a data controller would ship it). Each contender runs in its own
subprocess (peak RSS is its own):
- hash:   hashing the check result's cohort once with the key (what a pseudonymised run adds up front);
- plain:  ``run_filter`` on the numbered extract;
- pseudo: ``run_filter`` on the hashed extract (hashes the cohort, then matches digests).
Prints pseudo / plain time, the part spent hashing, and peak memory.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from contender import report, run_child

CONTENDERS = ("hash", "plain", "pseudo")
KEY_ENV = "OPTOUT_BENCH_PSEUDONYM_KEY"
KEY = "benchmark-key-not-a-secret"


def generate(folder: Path, rows: int, people: int, opted_out: float) -> None:
    from optout.nhs_number import synthetic
    from optout.pseudonym import Key, hash_numbers, hex_digests

    rng = np.random.default_rng(1)
    numbers = synthetic(people, start=900_000_000)
    person = rng.integers(0, people, rows)
    payload = {
        "person_id": person.astype(np.int64),
        "event_date": pa.array(rng.integers(18_000, 20_000, rows).astype(np.int32)).cast(pa.date32()),
        "value": rng.normal(size=rows),
    }
    pq.write_table(pa.table({"nhs_number": numbers[person], **payload}), folder / "plain.parquet")
    tokens = hex_digests(hash_numbers(numbers, Key(KEY))).take(pa.array(person))
    pq.write_table(pa.table({"token": tokens, **payload}), folder / "pseudo.parquet")
    np.save(folder / "cohort.npy", numbers)
    np.save(folder / "cleared.npy", numbers[rng.random(people) >= opted_out])
    head = "name: bench\npurpose: research\ntables:\n"
    (folder / "plain.yaml").write_text(
        head + "  - {name: events, path: plain.parquet, nhs_number: nhs_number, person_key: person_id}\n"
    )
    (folder / "pseudo.yaml").write_text(
        head + "  - {name: events, path: pseudo.parquet, nhs_number: token, person_key: person_id,\n"
        f"     pseudonymised: {{scheme: hmac-sha256, key_env: {KEY_ENV}}}}}\n"
    )


def child(name: str, folder: Path) -> dict[str, float]:
    from contender import check_result

    from optout.filter import run_filter
    from optout.pseudonym import Key, hashed_cohort
    from optout.spec import load_spec

    check = check_result(folder / "in", lookups=name == "plain")  # a pseudonymised spec needs no number lookups
    started = time.perf_counter()
    if name == "hash":
        hashed_cohort(check, Key(KEY))
        return {"seconds": time.perf_counter() - started}
    spec = load_spec(folder / "in" / f"{name}.yaml")
    manifest = run_filter(spec, folder / f"out-{name}", check)  # type: ignore[arg-type]
    table = manifest.tables[0]
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows_out": table.rows_out, "removed": table.rows_in - table.rows_out}


def measure(name: str, folder: Path) -> dict[str, float]:
    """Run one contender in a child process (its peak RSS is its own), with the key in its environment."""
    return run_child(
        [sys.executable, __file__, "--folder", str(folder), "--child", name], env={**os.environ, KEY_ENV: KEY}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--opted-out", type=float, default=0.05)
    parser.add_argument("--child", choices=CONTENDERS)
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    if args.child:
        report(child(args.child, args.folder))
        return
    with tempfile.TemporaryDirectory(prefix="optout-pseudonym-bench-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        (folder / "in").mkdir()
        generate(folder / "in", args.rows, args.rows // 2, args.opted_out)
        print(f"generated {args.rows:,} rows, {args.rows // 2:,} people in {time.perf_counter() - started:.1f}s")
        results = {name: measure(name, folder) for name in CONTENDERS}
        assert results["plain"]["rows_out"] == results["pseudo"]["rows_out"], "engines disagree"
        for name, result in results.items():
            print(f"{name:7s} {result['seconds']:7.2f}s  peak RSS {result['peak_rss_mib']:6.0f} MiB")
        plain, pseudo, hashing = (results[name]["seconds"] for name in ("plain", "pseudo", "hash"))
        print(
            f"pseudo / plain = {pseudo / plain:.2f}x; hashing the cohort ({args.rows // 2:,} numbers) "
            f"{hashing:.2f}s = {hashing / pseudo:.0%} of the pseudonymised run; same rows out: "
            f"{results['plain']['rows_out']:,}"
        )


if __name__ == "__main__":
    main()
