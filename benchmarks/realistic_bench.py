"""Benchmark the filter against DuckDB on extracts that look like the ones organisations send.

    .venv/bin/python benchmarks/realistic_bench.py                          # 1M and 10M rows, 3 runs
    .venv/bin/python benchmarks/realistic_bench.py --sizes 1000000 --repeat 1   # quick
    .venv/bin/python benchmarks/realistic_bench.py --sizes 50000000 --repeat 1 --plot benchmarks/realistic.png

One generated extract (cached under ``--cache``, never in the repository) has two tables:
- ``events``: ``rows`` rows of ``rows / 2`` people; the NHS number is text in the shapes real systems write
  it (plain ten digits, spaced 3-3-4, dashed, padded with blanks), with some missing (null, blank,
  ``NULL``), malformed and failing the check digit; a person key (a few rows have none); payload;
- ``linked``: ``rows / 2`` rows linked only by the person key (some keys seen beside no number).
It is written four ways: text numbers in Parquet (``text``), int64 numbers in Parquet (``integer``),
text in CSV (``csv``) and HMAC-SHA256 hex in Parquet (``pseudo``). For each, two contenders take turns,
each in its own process (peak RSS its own):
- ``optout``: ``run_filter`` (normalise, check digit, cleared set, person cascade, counts, hashes);
- ``duckdb``: the same work by hand in SQL: normalise (trim, drop spaces and dashes, null tokens, ten
  digits), check digit and placeholders, semi-join on the cleared set, the person cascade over both tables
  (keys with any uncleared row, keys never seen beside a number), ``COPY`` out in the input's format;
  for ``pseudo`` it hashes the cleared list with the same HMAC first (timed) and semi-joins on the hex.
Both outputs must keep the same rows (count and sum of person keys per table, asserted). Goals: optout
>= 1.0x DuckDB's speed on ``text`` and ``csv``, >= 1.2x on ``integer``, ``pseudo`` <= 1.5x ``text``,
peak < 1 GiB at every size. ``--plot`` draws time and peak memory against size from every run kept in
``--cache`` (a PNG).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import contender
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from optout.nhs_number import NULL_TOKENS

INPUTS = ("text", "integer", "csv", "pseudo")
CONTENDERS = ("duckdb", "optout")
KEY_ENV = "OPTOUT_BENCH_PSEUDONYM_KEY"
KEY = "benchmark-key-not-a-secret"
CHUNK_ROWS = 2_000_000  # generated (and written) this many rows at a time, so generating 50M rows fits
# Shares of the events' number shapes; the rest are plain ten digits.
SHAPES = {"spaced": 0.15, "dashed": 0.05, "padded": 0.05, "missing": 0.01, "malformed": 0.005, "bad_digit": 0.005}


def generate(folder: Path, rows: int, opted_out: float = 0.05, seed: int = 1) -> None:
    """Write every input of one extract into ``folder`` (skipped when it is complete already)."""
    if (folder / "done").exists():
        return
    from optout.nhs_number import synthetic, to_text
    from optout.pseudonym import Key, hash_numbers, hex_digests

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    people = max(rows // 2, 1)
    numbers = synthetic(people, start=900_000_000)
    np.save(folder / "cohort.npy", numbers)
    np.save(folder / "cleared.npy", numbers[rng.random(people) >= opted_out])
    digests = hash_numbers(numbers, Key(KEY))
    writers: dict[str, Any] = {}
    for start in range(0, rows, CHUNK_ROWS):
        count = min(CHUNK_ROWS, rows - start)
        person = rng.integers(0, people, count)
        shape = rng.choice(len(SHAPES) + 1, count, p=[1 - sum(SHAPES.values()), *SHAPES.values()]).astype(np.int8)
        payload = {
            "event_date": pa.array(rng.integers(18_000, 20_000, count).astype(np.int32)).cast(pa.date32()),
            "code": pa.array(np.array(["E11.9", "I10", "J45", "K21.0", "M54.5"])[rng.integers(0, 5, count)]),
            "value": rng.normal(size=count),
        }
        keys = pa.array(person.astype(np.int64), mask=rng.random(count) < 0.002)
        text = _shaped(to_text(numbers[person]), shape, rng)
        integers = pa.array(
            np.where(shape == 6, numbers[person] + 1, numbers[person]), mask=(shape == 4) | (shape == 5)
        )
        hexes = hex_digests(digests).take(pa.array(person))
        hexes = pc.if_else(pa.array(shape >= 4), pa.array(_tokens(shape, rng)), hexes)
        tables = {
            "events_text": pa.table({"person_id": keys, "nhs_number": text, **payload}),
            "events_integer": pa.table({"person_id": keys, "nhs_number": integers, **payload}),
            "events_pseudo": pa.table({"person_id": keys, "nhs_number": hexes, **payload}),
        }
        linked = rng.integers(0, people + people // 100, count // 2)  # 1% of keys beside no number
        tables["linked"] = pa.table(
            {
                "person_id": pa.array(linked.astype(np.int64)),
                "clinic": pa.array(np.array(["RX1", "RX2", "RY7", "RZ3"])[rng.integers(0, 4, count // 2)]),
                "seen_on": payload["event_date"].slice(0, count // 2),
            }
        )
        for name, table in tables.items():
            if name not in writers:
                writers[name] = pq.ParquetWriter(folder / f"{name}.parquet", table.schema, compression="snappy")
            writers[name].write_table(table)
            if name in ("events_text", "linked"):
                if f"{name}.csv" not in writers:
                    writers[f"{name}.csv"] = pacsv.CSVWriter(folder / f"{name}.csv", table.schema)
                writers[f"{name}.csv"].write_table(table)
    for writer in writers.values():
        writer.close()
    _write_specs(folder)
    (folder / "done").write_text("")


def _shaped(plain: pa.Array, shape: np.ndarray, rng: np.random.Generator) -> pa.Array:
    """The ten-digit text of each number in the shape chosen for its row."""
    parts = [pc.utf8_slice_codeunits(plain, a, b) for a, b in ((0, 3), (3, 6), (6, 10))]
    last = pc.utf8_slice_codeunits(plain, 9, 10).cast(pa.int8())
    wrong = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(plain, 0, 9), pc.bit_wise_xor(last, 1).cast(pa.string()), ""
    )
    return pc.choose(
        pa.array(shape),
        plain,
        pc.binary_join_element_wise(*parts, " "),
        pc.binary_join_element_wise(*parts, "-"),
        pc.binary_join_element_wise(" ", plain, "  ", ""),
        pa.array(_tokens(shape, rng)),
        pc.utf8_slice_codeunits(plain, 0, 8),
        wrong,
    )


def _tokens(shape: np.ndarray, rng: np.random.Generator) -> list[str | None]:
    """What a missing value looks like, row by row: a null, a blank or a null word."""
    choices: list[str | None] = [None, "", "NULL", "n/a"]
    picked = rng.integers(0, len(choices), len(shape))
    return [choices[i] if s == 4 else ("12345" if s == 5 else "x" * 64) for i, s in zip(picked, shape, strict=True)]


def _write_specs(folder: Path) -> None:
    for name in INPUTS:
        events, linked = (
            ("events_text.csv", "linked.csv") if name == "csv" else (f"events_{name}.parquet", "linked.parquet")
        )
        pseudo = f",\n     pseudonymised: {{scheme: hmac-sha256, key_env: {KEY_ENV}}}" if name == "pseudo" else ""
        (folder / f"{name}.yaml").write_text(
            "name: realistic\npurpose: research\ntables:\n"
            f"  - {{name: events, path: {events}, nhs_number: nhs_number, person_key: person_id{pseudo}}}\n"
            f"  - {{name: linked, path: {linked}, person_key: person_id}}\n"
        )


def _inputs(name: str) -> tuple[str, str, str]:
    """The events file, the linked file and the output format of one input."""
    if name == "csv":
        return "events_text.csv", "linked.csv", "csv"
    return f"events_{name}.parquet", "linked.parquet", "parquet"


# The check digit: the ten digits weighted 10..1 sum to a multiple of 11 (nhs_number.check_digit_ok).
_CHECK = " + ".join(f"(n // {10 ** (9 - i)} % 10) * {10 - i}" for i in range(10))
_TOKENS = ", ".join(f"'{token}'" for token in NULL_TOKENS)


def _duckdb_number(con: Any, name: str, folder: Path) -> tuple[str, str]:
    """Register the cleared set; return the SQL of a row's comparable number and of its being cleared
    (given that number as ``n``)."""
    cleared = np.load(folder / "cleared.npy")
    if name == "pseudo":
        from optout.pseudonym import Key, hash_numbers, hex_digests

        con.register("cleared", pa.table({"c": hex_digests(hash_numbers(cleared, Key(KEY)))}))
        return "lower(trim(nhs_number))", "n IN (SELECT c FROM cleared)"
    con.register("cleared", pa.table({"c": cleared}))
    valid = f"n BETWEEN 1000000000 AND 9999999999 AND n % 1111111111 <> 0 AND ({_CHECK}) % 11 = 0"
    if name == "integer":
        return "nhs_number", f"{valid} AND n IN (SELECT c FROM cleared)"
    # Normalised text: trimmed, spaces and dashes dropped, null words missing, ten digits or nothing.
    tidy = "regexp_replace(trim(nhs_number), '[\\s\\-]', '', 'g')"
    number = (
        f"CASE WHEN lower(trim(nhs_number)) IN ({_TOKENS}) THEN NULL "
        f"WHEN regexp_full_match({tidy}, '[0-9]{{10}}') THEN CAST({tidy} AS BIGINT) END"
    )
    return number, f"{valid} AND n IN (SELECT c FROM cleared)"


def run_duckdb(name: str, folder: Path, out: Path, check: Any) -> None:
    import duckdb

    events, linked, kind = _inputs(name)
    read = "read_csv('{}', header = true, all_varchar = true)" if kind == "csv" else "read_parquet('{}')"
    key = "NULLIF(trim(person_id), '')" if kind == "csv" else "person_id"
    options = "(FORMAT csv, HEADER)" if kind == "csv" else "(FORMAT parquet, COMPRESSION snappy)"
    with duckdb.connect() as con:
        number, cleared = _duckdb_number(con, name, folder)
        source = read.format(folder / events)
        con.execute(f"CREATE VIEW numbered AS SELECT *, {key} AS k, {number} AS n FROM {source}")
        # Pass 1: every key with an uncleared row, and every key seen beside a number.
        con.execute(
            "CREATE TEMP TABLE learned AS SELECT k, bool_and(coalesce(ok, false)) AS ok FROM "
            f"(SELECT k, {cleared} AS ok FROM numbered WHERE k IS NOT NULL) GROUP BY k"
        )
        con.execute(
            f"COPY (SELECT * EXCLUDE (k, n, ok) FROM (SELECT *, {cleared} AS ok FROM numbered) "
            "WHERE coalesce(ok, false) AND (k IS NULL OR k NOT IN (SELECT k FROM learned WHERE NOT ok))) "
            f"TO '{out / Path(events).name}' {options}"
        )
        con.execute(
            f"COPY (SELECT * FROM {read.format(folder / linked)} WHERE {key} IN (SELECT k FROM learned WHERE ok)) "
            f"TO '{out / linked}' {options}"
        )


def run_optout(name: str, folder: Path, out: Path, check: Any) -> None:
    from optout.filter import run_filter
    from optout.spec import load_spec

    run_filter(load_spec(folder / f"{name}.yaml"), out, check)


def kept(out: Path, name: str) -> list[list[int]]:
    """Rows and the sum of person keys of each output table (the same rows kept: asserted).

    Read in batches: the check is the harness's, and the child's peak memory must stay the contender's.
    """
    events, linked, kind = _inputs(name)
    found = []
    for file in (Path(events).name, linked):
        path = out / file
        if kind == "csv":
            options = pacsv.ConvertOptions(include_columns=["person_id"], column_types={"person_id": pa.int64()})
            batches: Any = pacsv.open_csv(path, convert_options=options)
        else:
            batches = pq.ParquetFile(path).iter_batches(columns=["person_id"])
        rows = total = 0
        for batch in batches:
            rows += batch.num_rows
            total += int(pc.sum(batch.column(0)).as_py() or 0)
        found.append([rows, total])
    return found


def child(contender_name: str, name: str, folder: Path) -> None:
    """Run one contender on one input; print seconds, rows kept (JSON). Imports are not timed."""
    import duckdb  # noqa: F401

    import optout.homes.files.engine
    import optout.spec
    import optout.store  # noqa: F401

    out = folder.with_name(f"{folder.name}-out-{contender_name}-{name}-{os.getpid()}")  # outside the inputs' folder
    shutil.rmtree(out, ignore_errors=True)
    if contender_name == "duckdb":
        out.mkdir()
    # The store builds optout's lookups once per version (not timed). A pseudonymised spec needs the cleared
    # set alone, to scan its other columns for numbers; its hashed list is timed (read from the data folder).
    ours = contender_name != "duckdb"
    check: Any = contender.check_result(folder, lookups=name != "pseudo") if ours else None
    if ours and name == "pseudo":
        _ = check.cleared_set
    started = time.perf_counter()
    globals()[f"run_{contender_name}"](name, folder, out, check)
    seconds = time.perf_counter() - started
    # The peak before the harness reads the outputs back (the contender's own; at 50M the read added ~160 MiB).
    result = {"seconds": seconds, "peak_mib": contender.own_peak_mib(), "kept": kept(out, name)}
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000000", help="rows of the events table, comma-separated")
    parser.add_argument("--inputs", default=",".join(INPUTS), help=f"any of {', '.join(INPUTS)}")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (they take turns)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/optout-realistic"), help="generated data")
    parser.add_argument("--plot", type=Path, help="draw every run kept in --cache into this PNG")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.folder)
        return
    if args.generate:
        generate(args.folder, args.generate)
        return
    inputs = args.inputs.split(",")
    for rows in (int(size) for size in args.sizes.split(",")):
        folder = args.cache / f"rows-{rows}"
        started = time.perf_counter()
        # In a child: a child's max RSS starts at its parent's, so the parent must stay small.
        subprocess.run([sys.executable, __file__, "--generate", str(rows), "--folder", str(folder)], check=True)
        print(f"{rows:,} rows ready in {time.perf_counter() - started:.0f}s (cached in {folder})", flush=True)

        # A data folder of this run's own: the first pseudonymised run hashes the list, later ones read it.
        home = args.cache / f"home-{rows}"
        shutil.rmtree(home, ignore_errors=True)

        def measure(pair: tuple[str, str], folder: Path = folder, home: Path = home) -> dict[str, Any]:
            env = {**os.environ, KEY_ENV: KEY, "OPTOUT_HOME": str(home)}
            command = [sys.executable, __file__, "--folder", str(folder), "--child", *pair]
            return {**contender.measure(command, env=env), "load": os.getloadavg()[0]}

        pairs = [(who, name) for name in inputs for who in CONTENDERS]
        results = contender.take_turns(pairs, measure, args.repeat)
        for name in inputs:
            ours, theirs = results["optout", name], results["duckdb", name]
            assert ours["kept"] == theirs["kept"], f"{name}: optout and duckdb kept different rows"
        record = {
            "rows": rows,
            "load": os.getloadavg(),
            "at": time.time(),
            "results": {f"{w}/{n}": r for (w, n), r in results.items()},
        }
        with (args.cache / "runs.jsonl").open("a") as log:
            log.write(json.dumps(record) + "\n")
        print_table(rows, inputs, results)
    if args.plot:
        plot(args.cache / "runs.jsonl", args.plot)


def print_table(rows: int, inputs: list[str], results: dict[tuple[str, str], dict[str, Any]]) -> None:
    loads = sorted(run["load"] for run in results.values())
    print(f"{rows:,} rows, load {loads[0]:.1f}-{loads[-1]:.1f} (1 min); best of the runs, peak the highest")
    print(f"{'input':8} {'optout s':>9} {'duckdb s':>9} {'speed x':>8} {'optout MiB':>11} {'duckdb MiB':>11}")
    for name in inputs:
        ours, theirs = results["optout", name], results["duckdb", name]
        print(
            f"{name:8} {ours['seconds']:9.2f} {theirs['seconds']:9.2f} {theirs['seconds'] / ours['seconds']:8.2f} "
            f"{ours['peak_mib']:11.0f} {theirs['peak_mib']:11.0f}  runs {_runs(ours)} vs {_runs(theirs)}"
        )
    if "pseudo" in inputs and "text" in inputs:
        pseudo, text = results["optout", "pseudo"], results["optout", "text"]["seconds"]
        cold = (
            f"; the first run, which hashes the list: {pseudo['runs'][0] / text:.2f}x"
            if len(pseudo["runs"]) > 1
            else ""
        )
        print(f"pseudonymised / text, optout: {pseudo['seconds'] / text:.2f}x (goal <= 1.5x){cold}")


def _runs(result: dict[str, Any]) -> str:
    return "/".join(f"{seconds:.1f}" for seconds in result["runs"])


def plot(log: Path, target: Path) -> None:
    """Time and peak memory against size, one line per contender and input, from the newest run per size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    newest: dict[int, dict[str, Any]] = {}
    for line in log.read_text().splitlines():
        record = json.loads(line)
        newest[record["rows"]] = record
    sizes = sorted(newest)
    figure, (times, memory) = plt.subplots(1, 2, figsize=(11, 4.5))
    names = sorted({key for record in newest.values() for key in record["results"] if not key.startswith("plain")})
    for key in names:
        style = "-" if key.startswith("optout") else "--"
        at = [size for size in sizes if key in newest[size]["results"]]
        found = [newest[size]["results"][key] for size in at]
        times.plot([s / 1e6 for s in at], [r["seconds"] for r in found], style, marker="o", label=key)
        memory.plot([s / 1e6 for s in at], [r["peak_mib"] for r in found], style, marker="o", label=key)
    memory.axhline(1024, color="grey", linewidth=0.8)
    memory.annotate("1 GiB", (sizes[0] / 1e6, 1024), textcoords="offset points", xytext=(0, 4), color="grey")
    for axes, label in ((times, "seconds (best of the runs)"), (memory, "peak RSS, MiB")):
        axes.set_xscale("log")
        axes.set_xlabel("rows in the events table (millions; the linked table has half as many)")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
    times.set_yscale("log")
    times.legend(fontsize=8)
    figure.suptitle("optout filter vs DuckDB doing the same work, 2 shared cores (solid: optout, dashed: DuckDB)")
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    print(f"drew {target}")


if __name__ == "__main__":
    main()
