"""Load: a 5,000,000-person cohort refresh and a 10,000,000-row filter through the real CLI, in bounded memory.

    .venv/bin/python benchmarks/load_bench.py                          # 5,000,000 people, 10,000,000 rows
    .venv/bin/python benchmarks/load_bench.py --people 200000 --rows 400000   # quick

The extract and the cohort come from ``filter_bench.generate`` (imported, not copied). Every step runs
as its own subprocess, so its peak memory (max RSS) is its own, against a SQLite store:
- ``check request``: read the cohort CSV, normalise, build the request file, record it pending;
- ``check import``: parse the reply (95% cleared), check it against the request, publish the version;
- ``filter``: load that version from the store, filter the extract (person cascade), manifest with hashes.
The MESH transport is measured apart by ``refresh_bench.py``. The simplest peer runs in the same run on
the same files (pandas: ``read_csv`` + ``drop_duplicates`` + lines out; ``read_csv`` + ``isin``; and
``filter_bench``'s ``read_parquet`` + ``isin`` + ``to_parquet``), and the filter's I/O floor too.
Targets: every step under 1 GiB peak RSS, each at least as fast as its pandas peer, ``run_filter``
(``filter_bench``'s optout contender) at >= 0.7x the floor's throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OPTOUT = str(Path(sys.executable).with_name("optout"))
GIB_MIB = 1024

_PEERS = {
    "request": """
import sys, pandas as pd
numbers = pd.read_csv(sys.argv[1], usecols=["nhs_number"], dtype=str)["nhs_number"].str.strip().drop_duplicates()
numbers = numbers[numbers.str.fullmatch(r"[0-9]{10}")].sort_values()
open(sys.argv[2], "w").write("".join(n + ",\\n" for n in numbers))
""",
    "import": """
import sys, pandas as pd
request = pd.read_csv(sys.argv[1], header=None, usecols=[0], dtype="int64")[0]
reply = pd.read_csv(sys.argv[2], header=None, usecols=[0], dtype="int64")[0].drop_duplicates()
assert reply.isin(request).all()
""",
}


def measured(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run in a fresh child of a fresh Python, so RUSAGE_CHILDREN is this step's alone."""
    probe = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter(); r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'code': r.returncode, 'err': r.stderr[-500:],\n"
        "  'peak_mib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe, *argv], env=env, capture_output=True, text=True, check=True)
    found = json.loads(result.stdout)
    if found["code"]:
        raise SystemExit(f"{argv[:4]} failed ({found['code']}): {found['err'].strip()}")
    return {"seconds": found["seconds"], "peak_mib": found["peak_mib"]}


def prepare(folder: Path, people: int, rows: int) -> None:
    """The extract, cohort and cleared set (``filter_bench.generate``), the cohort as CSV, and the reply."""
    sys.path.insert(0, str(HERE))
    import filter_bench
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from optout.ndop import build_request

    filter_bench.generate(folder, rows, people, 0.05)
    cohort, cleared = np.load(folder / "cohort.npy"), np.load(folder / "cleared.npy")
    pacsv.write_csv(
        pa.table({"person_id": np.arange(len(cohort)), "nhs_number": pa.array(cohort.astype(str))}),
        folder / "cohort.csv",
    )
    (folder / "reply.dat").write_bytes(build_request(cleared))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=5_000_000)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dir", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        prepare(args.dir, args.people, args.rows)
        return
    with (
        tempfile.TemporaryDirectory(prefix="optout-load-") as scratch,
        tempfile.TemporaryDirectory(prefix="optout-load-out-") as outputs,  # outside the input folder
    ):
        folder = args.dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        env = {key: value for key, value in os.environ.items() if key != "OPTOUT_STORE_URL"}
        env["OPTOUT_HOME"] = str(folder / "home")  # a SQLite store of its own
        started = time.perf_counter()
        # In a child: a forked child's peak RSS starts at its parent's, so the parent must stay small.
        command = [sys.executable, __file__, "--prepare", "--dir", str(folder), "--people", str(args.people)]
        subprocess.run([*command, "--rows", str(args.rows)], check=True)
        print(f"generated {args.people:,} people and {args.rows:,} rows in {time.perf_counter() - started:.0f}s")
        sys.path.insert(0, str(HERE))
        import filter_bench

        results: dict[str, dict[str, float]] = {}
        request, reply = folder / "request.dat", folder / "reply.dat"
        cohort_csv = str(folder / "cohort.csv")
        results["request"] = measured(
            [OPTOUT, "check", "request", cohort_csv, "--id-column", "nhs_number", "--out", str(request)], env
        )
        results["request (pandas)"] = measured(
            [sys.executable, "-c", _PEERS["request"], cohort_csv, str(folder / "peer.dat")], env
        )
        results["import"] = measured([OPTOUT, "check", "import", str(request), str(reply)], env)
        results["import (pandas)"] = measured([sys.executable, "-c", _PEERS["import"], str(request), str(reply)], env)
        out = Path(outputs) / "filtered"
        spec = str(folder / "spec.yaml")
        results["filter"] = measured([OPTOUT, "filter", "--spec", spec, "--out-dir", str(out)], env)
        for name in ("optout", "floor", "pandas"):  # optout: run_filter alone, without process start or the store
            results[f"filter ({name})"] = filter_bench.measure(name, folder)

        print(f"{'step':18} {'seconds':>8} {'peak MiB':>9}")
        for name, result in results.items():
            print(f"{name:18} {result['seconds']:8.2f} {result['peak_mib']:9.0f}")
        refresh = results["request"]["seconds"] + results["import"]["seconds"]
        ours = [results[step] for step in ("request", "import", "filter")]
        floor_ratio = results["filter (floor)"]["seconds"] / results["filter (optout)"]["seconds"]
        checks = {
            "peak < 1 GiB": all(step["peak_mib"] < GIB_MIB for step in ours),
            "request <= pandas": results["request"]["seconds"] <= results["request (pandas)"]["seconds"],
            "import <= pandas": results["import"]["seconds"] <= results["import (pandas)"]["seconds"],
            "filter (CLI, all in) <= pandas": results["filter"]["seconds"] <= results["filter (pandas)"]["seconds"],
            "filter >= 0.7x floor": floor_ratio >= 0.7,
        }
        print(f"refresh without MESH (request + import): {refresh:.1f}s; run_filter at {floor_ratio:.2f}x the floor")
        print("  (`filter` is the whole CLI run: process start, loading the version from the store, filter)")
        for name, ok in checks.items():
            print(f"  {name}: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
