"""Benchmark the validation proof against the filter it proves and the naive Great Expectations suite.

    .venv/bin/python benchmarks/validate_bench.py               # 10,000,000 rows, 5,000,000 people
    .venv/bin/python benchmarks/validate_bench.py --rows 1000000 --repeat 3
    .venv/bin/python benchmarks/validate_bench.py --data /tmp/optout-realistic/rows-1000000 --repeat 3 \
        --contenders filter,proof,filter_process,verify_process    # realistic_bench's extract (text numbers)

On the extract of ``filter_bench.py`` (same generator), or one ``realistic_bench.py`` generated (``--data``,
``--input``), each contender in its own subprocess, taking turns ``--repeat`` times:
- filter: ``run_filter`` (what is being proven; its time is the yardstick);
- optout: ``run_validation`` twice: the first starts GX's worker process (``optout.gx_suite``), whose import
  overlaps the proof (``first_seconds``); the second, timed, finds it ready: the one proof's counts, the
  GX suite over them, result, Data Docs and the store's record;
- proof:  ``optout.proof.prove`` alone (counts, the every-cell scan and schema comparison, each output
  read once; no GX): what the proof itself costs;
- naive:  GX ``ExpectColumnValuesToNotBeInSet(value_set=opted_out)`` on the output's number column,
  with the same checkpoint and Data Docs; it proves check 1 only (generated extract only);
- scan:   the independent every-cell leak scan alone (``optout.leak_scan``): every column of every output
  read and searched for uncleared NHS numbers, whatever its type (its cost inside the proof);
- filter_process, verify_process: the commands `optout filter` and `optout verify` as a shell runs them,
  against a store holding the cohort's version, timed from exec to exit (interpreter start, imports and
  GX's, 3-9 s, included), with the CPU seconds of each (verify's include its GX worker's).
In-process timings exclude imports. After each GX run every artefact it wrote is scanned for the opted-out
numbers. Targets: proof <= 0.5x the filter's time, no leak; `optout verify` <= 1.0x `optout filter`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import contender
import numpy as np

FILTER_BENCH = str(Path(__file__).resolve().with_name("filter_bench.py"))  # its generator makes the data

CONTENDERS = ("filter", "optout", "proof", "scan", "naive", "filter_process", "verify_process")
PROCESSES = {"filter_process": "filter", "verify_process": "verify"}  # `optout <command>`, timed from outside
CLI = "import sys; from optout.cli import main; sys.exit(main())"  # what the console script runs


def check_result(data: Path):  # type: ignore[no-untyped-def]
    """A real store ``CheckResult`` for the generated cohort, checked now (fresh and current)."""
    from optout.store import CheckResult, VersionInfo

    cohort, cleared = np.load(data / "cohort.npy"), np.load(data / "cleared.npy")
    now = datetime.now(UTC)
    info = VersionInfo(1, "bench", "published", "0" * 64, now, now, now, len(cohort), len(cleared), None)
    result = CheckResult(info, cohort, cleared)
    _ = result.cleared_set, result.cohort_set
    return result


def run_filter(spec: Path, work: Path, result) -> dict[str, object]:  # type: ignore[no-untyped-def]
    from optout.filter import run_filter as filter_extract
    from optout.spec import load_spec

    manifest = filter_extract(load_spec(spec), work / "out", result)
    return {"rows_out": sum(table.rows_out for table in manifest.tables)}


def run_optout(spec: Path, work: Path, result) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Validation twice: the first starts GX's worker (its import overlapping the proof), the second finds
    it ready (a long-lived process, as a worker validating again); ``seconds`` is the second's."""
    from optout.spec import load_spec
    from optout.validation import run_validation

    def validate():  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        proof = run_validation(load_spec(spec), work / "out", result, data_docs_dir=work / "docs", current=result.info)
        return time.perf_counter() - started, proof

    first, _ = validate()
    seconds, proof = validate()
    artefacts = [str(proof.result_path.parent), str(work / "docs")]
    return {"seconds": seconds, "first_seconds": first, "ok": proof.ok, "artefacts": artefacts}


def run_proof(spec: Path, work: Path, result) -> dict[str, object]:  # type: ignore[no-untyped-def]
    from optout.homes import home_for
    from optout.manifest import read_manifest
    from optout.proof import prove
    from optout.spec import load_spec

    out = work / "out"
    when = {"current": result.info, "now": datetime.now(UTC), "max_age": timedelta(days=1)}
    found = prove(home_for(load_spec(spec)), out, read_manifest(out), result, **when)
    flags = ("uncleared_number_rows", "removed_person_rows", "rows_mismatch", "leaked_values", "schema_changed")
    return {"ok": all(row["hash_ok"] and not any(row[flag] for flag in flags) for row in found.rows)}


def run_scan(spec: Path, work: Path, result) -> dict[str, object]:  # type: ignore[no-untyped-def]
    from optout.leak_scan import LeakScan
    from optout.manifest import read_manifest

    scan, out = LeakScan(result.cleared_set), work / "out"
    for table in read_manifest(out).tables:
        scan.file(table.name, out / table.file)
    return {"ok": not scan.leaks(), "columns": scan.columns_scanned()}


def run_naive(spec: Path, work: Path, result) -> dict[str, object]:  # type: ignore[no-untyped-def]
    import great_expectations as gx
    import great_expectations.expectations as gxe
    import pandas as pd

    opted_out = np.setdiff1d(result.cohort, result.cleared)
    frame = pd.read_parquet(work / "out" / "extract.parquet", columns=["nhs_number"])
    root, docs = work / "naive", work / "naive_docs"
    context = gx.get_context(mode="file", project_root_dir=str(root))
    context.update_data_docs_site(
        "local_site",
        {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs)},
        },
    )
    batch = (
        context.data_sources.add_pandas("naive").add_dataframe_asset("out").add_batch_definition_whole_dataframe("b")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="naive"))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeInSet(column="nhs_number", value_set=opted_out.tolist()))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="naive", data=batch, suite=suite))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="naive", validation_definitions=[definition], actions=[gx.checkpoint.UpdateDataDocsAction(name="d")]
        )
    )
    outcome = checkpoint.run(batch_parameters={"dataframe": frame})
    return {"ok": bool(outcome.success), "artefacts": [str(root), str(docs)]}


def leaked(folders: list[str], numbers: np.ndarray) -> int:
    """How many distinct opted-out numbers appear as ten digits in any file under ``folders``."""
    wanted = {str(n) for n in numbers}
    found: set[str] = set()
    for folder in folders:
        for path in Path(folder).rglob("*"):
            if path.is_file() and path.suffix in {".json", ".html", ".yml"}:
                found |= wanted & set(re.findall(r"(?<!\d)\d{10}(?!\d)", path.read_text(errors="replace")))
    return len(found)


def child(name: str, spec: Path, work: Path) -> None:
    """Run one in-process contender; print its timing (JSON). Imports and loading the check result are
    not timed."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    import pandas  # noqa: F401

    import optout.homes.files.engine  # noqa: F401

    if name == "naive":
        import great_expectations  # noqa: F401  # its import is timed by the process contenders only

    result = check_result(spec.parent)
    started = time.perf_counter()
    extra = globals()[f"run_{name}"](spec, work, result)
    extra.setdefault("seconds", time.perf_counter() - started)
    artefacts = extra.pop("artefacts", None)
    if artefacts is not None:
        extra["leaked_numbers"] = leaked(artefacts, np.setdiff1d(result.cohort, result.cleared))
    print(json.dumps(extra))


def seed_store(data: Path) -> None:
    """Record the generated cohort as a request and its cleared numbers as the reply (``OPTOUT_HOME``'s store),
    as `optout check request` and `optout check import` would: the commands find a current version."""
    from optout.store import Store

    store = Store()
    version = store.record_request(np.load(data / "cohort.npy"))
    store.import_reply(version.id, np.load(data / "cleared.npy"))


def command(name: str, spec: Path, work: Path) -> dict[str, Any]:
    """Time `optout filter` or `optout verify` as a user's shell would: from exec to exit, wall clock; with
    the CPU seconds of the process and the processes it waited for (verify's GX worker)."""
    out = work / "out_process"
    if name == "filter_process":
        shutil.rmtree(out, ignore_errors=True)
        args = ["filter", "--spec", str(spec), "--out-dir", str(out)]
    else:
        args = ["verify", "--spec", str(spec), "--dir", str(out)]
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "False"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", CLI, *args], stdout=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"optout {args[0]} failed (exit {os.waitstatus_to_exitcode(status)})")
    cpu = usage.ru_utime + usage.ru_stime
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_mib": usage.ru_maxrss / 1024, "load": os.getloadavg()[0]}


def measure(name: str, spec: Path, work: Path) -> dict[str, Any]:
    if name in PROCESSES:
        return command(name, spec, work)
    found = contender.measure([sys.executable, __file__, "--child", name, "--spec", str(spec), "--dir", str(work)])
    return {**found, "load": os.getloadavg()[0]}


def prepare(args: argparse.Namespace, work: Path) -> Path:
    """The spec to prove: ``--data``'s (an extract generated already), else filter_bench's generated now."""
    if args.data:
        return args.data / f"{args.input}.yaml"
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # In a child: a child's max RSS starts at its parent's, so the parent must stay small.
    people = str(args.people or args.rows // 2)
    generate = [sys.executable, FILTER_BENCH, "--generate", str(args.rows), people, str(args.opted_out)]
    subprocess.run([*generate, "--dir", str(data)], check=True)
    print(f"generated {args.rows:,} rows in {time.perf_counter() - started:.1f}s")
    return data / "spec.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    contender.add_extract_arguments(parser)
    parser.add_argument("--data", type=Path, help="an extract generated already: realistic_bench's rows-N folder")
    parser.add_argument("--input", default="text", help="with --data: which of its specs (text, integer, csv)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="which, comma-separated")
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender (they take turns)")
    parser.add_argument("--skip-naive", action="store_true", help="the naive suite takes minutes at 10M rows")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.spec, args.dir)
        return
    if args.seed:
        seed_store(args.data)
        return
    with tempfile.TemporaryDirectory(prefix="validate-bench-") as tmp:
        work = args.dir or Path(tmp)
        os.environ["OPTOUT_HOME"] = str(work / "home")  # every child's store: the validations' records too
        spec = prepare(args, work)
        names = [n for n in args.contenders.split(",") if not (n == "naive" and (args.skip_naive or args.data))]
        subprocess.run([sys.executable, __file__, "--seed", "--data", str(spec.parent)], check=True)
        measure("filter", spec, work)  # not timed: the output the others prove
        if "verify_process" in names:
            measure("filter_process", spec, work)  # not timed: its output, and the store's lookups built once
        results = contender.take_turns(names, lambda name: measure(name, spec, work), args.repeat)
        for name in names:
            print(f"{name:>14}: {json.dumps(results[name])}", flush=True)
        report(results)


def report(results: dict[str, dict[str, Any]]) -> None:
    loads = sorted(run["load"] for run in results.values())
    print(f"best of the runs; load {loads[0]:.1f}-{loads[-1]:.1f} (1 min) on {os.cpu_count()} cores")
    if "filter" in results:
        base = results["filter"]["seconds"]
        for name in ("proof", "scan", "optout", "naive"):
            if name in results:
                found = results[name]
                leaks = (
                    f"; opted-out numbers in its artefacts: {found['leaked_numbers']:,}"
                    if "leaked_numbers" in found
                    else ""
                )
                print(
                    f"{name:>7}: {found['seconds']:.2f}s = {found['seconds'] / base:.2f}x the filter's {base:.2f}s; "
                    f"ok={found['ok']}; peak {found['peak_mib']:.0f} MiB{leaks}"
                )
        if "proof" in results:
            met = results["proof"]["seconds"] <= 0.5 * base
            print(f"target: the whole proof <= 0.50x the filter: {'met' if met else 'MISSED'}")
    if "verify_process" in results and "filter_process" in results:
        verify, filter_ = results["verify_process"], results["filter_process"]
        turns = "/".join(f"{v / f:.2f}" for v, f in zip(verify["runs"], filter_["runs"], strict=True))
        print(
            f"optout verify {verify['seconds']:.2f}s ({verify['cpu_seconds']:.1f} CPU s, peak {verify['peak_mib']:.0f} "
            f"MiB) vs optout filter {filter_['seconds']:.2f}s ({filter_['cpu_seconds']:.1f} CPU s): "
            f"{verify['seconds'] / filter_['seconds']:.2f}x (each turn {turns}; target <= 1.0x)"
        )


if __name__ == "__main__":
    main()
