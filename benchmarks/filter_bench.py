"""Benchmark the filter against the I/O floor and two peers on one generated Parquet extract.

    .venv/bin/python benchmarks/filter_bench.py               # 10,000,000 rows, 5,000,000 people
    .venv/bin/python benchmarks/filter_bench.py --rows 200000 # quick

Every contender runs in its own subprocess so its peak memory (max RSS) is its own:
- floor:  pyarrow streamed read + write of the same file (same batch size and compression);
- pandas: ``read_parquet`` + ``isin`` + ``to_parquet``, the simplest peer;
- duckdb: semi-join on the cleared set, ``COPY ... TO`` Parquet, the strongest peer we know;
- optout: ``run_filter`` (normalisation, person-key cascade, manifest with hashes); its time excludes
  loading the check result (``load`` is reported apart: the store does it once per version).
Targets: optout >= 0.7x the floor's throughput, at least as fast as DuckDB, peak memory < 1 GiB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import contender
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CONTENDERS = ("floor", "pandas", "duckdb", "optout")
BATCH_ROWS = 1 << 20


def generate(folder: Path, rows: int, people: int, opted_out: float, seed: int = 1) -> None:
    """A Parquet extract with valid NHS numbers (one per person), person keys, and some payload."""
    from optout.nhs_number import synthetic

    rng = np.random.default_rng(seed)
    numbers = synthetic(people, start=900_000_000)
    person = rng.integers(0, people, rows)
    codes = np.array(["E11.9", "I10", "J45", "K21.0", "M54.5"])
    table = pa.table(
        {
            "nhs_number": numbers[person],
            "person_id": person.astype(np.int64),
            "event_date": pa.array(rng.integers(18_000, 20_000, rows).astype(np.int32)).cast(pa.date32()),
            "code": pa.array(codes[rng.integers(0, len(codes), rows)]),
            "value": rng.normal(size=rows),
        }
    )
    pq.write_table(table, folder / "extract.parquet", compression="snappy")
    np.save(folder / "cohort.npy", numbers)
    np.save(folder / "cleared.npy", numbers[rng.random(people) >= opted_out])
    (folder / "spec.yaml").write_text(
        "name: benchmark\npurpose: research\ntables:\n"
        "  - {name: events, path: extract.parquet, nhs_number: nhs_number, person_key: person_id}\n"
    )


def run_floor(folder: Path) -> dict[str, float]:
    source = pq.ParquetFile(folder / "extract.parquet")
    with pq.ParquetWriter(folder / "floor.parquet", source.schema_arrow, compression="snappy") as writer:
        for batch in source.iter_batches(batch_size=BATCH_ROWS):
            writer.write_batch(batch)
    return {}


def run_pandas(folder: Path) -> dict[str, float]:
    import pandas as pd

    cleared = np.load(folder / "cleared.npy")
    frame = pd.read_parquet(folder / "extract.parquet")
    frame[frame["nhs_number"].isin(cleared)].to_parquet(folder / "pandas.parquet", index=False)
    return {}


def run_duckdb(folder: Path) -> dict[str, float]:
    import duckdb

    cleared = pa.table({"n": np.load(folder / "cleared.npy")})
    with duckdb.connect() as con:
        con.register("cleared", cleared)
        con.execute(
            f"COPY (SELECT * FROM read_parquet('{folder / 'extract.parquet'}') "
            "WHERE nhs_number IN (SELECT n FROM cleared)) "
            f"TO '{folder / 'duckdb.parquet'}' (FORMAT parquet, COMPRESSION snappy)"
        )
    return {}


def run_optout(folder: Path) -> dict[str, float]:
    from filter_data import make_check_result

    from optout.filter import run_filter
    from optout.spec import load_spec

    started = time.perf_counter()
    result = make_check_result(np.load(folder / "cohort.npy"), np.load(folder / "cleared.npy"), version=1)
    _ = result.cleared_set, result.cohort_set
    loaded = time.perf_counter()
    out = folder.with_name(f"{folder.name}-optout")  # outside the input folder, as the filter insists
    try:
        manifest = run_filter(load_spec(folder / "spec.yaml"), out, result)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"load": loaded - started, "skip": loaded - started, "rows_out": manifest.tables[0].rows_out}


def child(name: str, folder: Path) -> None:
    """Run one contender and print its timing (JSON) on stdout; imports are not timed."""
    import duckdb  # noqa: F401
    import pandas  # noqa: F401

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))
    import filter_data  # noqa: F401  (the store, SQLAlchemy included)

    import optout.homes.files.engine
    import optout.spec  # noqa: F401

    started = time.perf_counter()
    extra = globals()[f"run_{name}"](folder)
    seconds = time.perf_counter() - started - extra.pop("skip", 0.0)
    print(json.dumps({"seconds": seconds, **extra}))


def measure(name: str, folder: Path) -> dict[str, float]:
    return contender.measure([sys.executable, __file__, "--child", name, "--dir", str(folder)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    contender.add_extract_arguments(parser)
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs per contender")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--generate", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        rows, people, share = args.generate
        generate(args.dir, int(rows), int(people), float(share))
        return
    if args.child:
        child(args.child, args.dir)
        return
    with tempfile.TemporaryDirectory(prefix="optout-bench-") as scratch:
        folder = args.dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        people = args.people or max(args.rows // 2, 1)
        # In a child too: a child's max RSS starts at its parent's, so the parent must stay small.
        command = [sys.executable, __file__, "--generate", str(args.rows), str(people), str(args.opted_out)]
        subprocess.run([*command, "--dir", str(folder)], check=True)
        size = (folder / "extract.parquet").stat().st_size / 2**20
        print(f"generated {args.rows:,} rows ({size:.0f} MiB) in {time.perf_counter() - started:.1f}s")
        results = contender.take_turns(CONTENDERS, lambda name: measure(name, folder), args.repeat)
        floor = results["floor"]["seconds"]
        print(f"{'':8} {'seconds':>8} {'Mrows/s':>8} {'x floor':>8} {'peak MiB':>9}")
        for name, result in results.items():
            seconds = result["seconds"]
            line = f"{name:8} {seconds:8.2f} {args.rows / seconds / 1e6:8.2f} {floor / seconds:8.2f}"
            print(f"{line} {result['peak_mib']:9.0f}")
        ours = results["optout"]
        print(f"optout: loading the check result (two NumberSets) took {ours['load']:.2f}s more")
        ok = floor / ours["seconds"] >= 0.7 and ours["seconds"] <= results["duckdb"]["seconds"]
        ok = ok and ours["peak_mib"] < 1024
        print(f"targets (>= 0.7x floor, <= duckdb time, < 1024 MiB): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
