"""Benchmark the validation proof against the filter it proves and the naive Great Expectations suite.

    .venv/bin/python benchmarks/validate_bench.py               # 10,000,000 rows, 5,000,000 people
    .venv/bin/python benchmarks/validate_bench.py --rows 1000000

On the extract of ``filter_bench.py`` (same generator), each contender in its own subprocess:
- filter: ``run_filter`` (what is being proven; its time is the yardstick);
- optout: ``run_validation``: the one proof's counts, then the GX suite over them, result and Data Docs;
- proof:  ``optout.proof.prove`` alone (counts, the every-cell scan and schema comparison, each output
  read once; no GX): what the proof itself costs;
- naive:  GX ``ExpectColumnValuesToNotBeInSet(value_set=opted_out)`` on the output's number column,
  with the same checkpoint and Data Docs; it proves check 1 only;
- scan:   the independent every-cell leak scan alone (``optout.leak_scan``): every column of the output
  read and searched for uncleared NHS numbers, whatever its type (its cost inside the proof);
- filter_process, verify_process: the filter and ``optout``'s validation again, timed as a command is, from
  a process with nothing imported (GX's import, 3-7 s, included): ``optout verify`` against ``optout filter``.
Other timings exclude importing GX (reported apart, paid once per worker process). After each GX run every
artefact it wrote is scanned for the opted-out numbers. Target: optout <= 0.5x the filter's time, no leak.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import contender
import numpy as np

FILTER_BENCH = str(Path(__file__).resolve().with_name("filter_bench.py"))  # its generator makes the data

CONTENDERS = ("filter", "optout", "proof", "scan", "naive", "filter_process", "verify_process")
WHOLE = {"filter_process": "filter", "verify_process": "optout"}  # timed with their imports
DATA = "data"  # the generated extract; outputs go beside it (the filter refuses to write inside its inputs)


def check_result(folder: Path):  # type: ignore[no-untyped-def]
    """A real store ``CheckResult`` for the generated cohort, checked now (fresh and current)."""
    from optout.store import CheckResult, VersionInfo

    cohort, cleared = np.load(folder / DATA / "cohort.npy"), np.load(folder / DATA / "cleared.npy")
    now = datetime.now(UTC)
    info = VersionInfo(1, "bench", "published", "0" * 64, now, now, now, len(cohort), len(cleared), None)
    result = CheckResult(info, cohort, cleared)
    _ = result.cleared_set, result.cohort_set
    return result


def run_filter(folder: Path, result) -> dict[str, object]:  # type: ignore[no-untyped-def]
    from optout.filter import run_filter as filter_extract
    from optout.spec import load_spec

    manifest = filter_extract(load_spec(folder / DATA / "spec.yaml"), folder / "out", result)
    return {"rows_out": manifest.tables[0].rows_out}


def run_optout(folder: Path, result) -> dict[str, object]:  # type: ignore[no-untyped-def]
    from optout.spec import load_spec
    from optout.validation import run_validation

    spec = load_spec(folder / DATA / "spec.yaml")
    proof = run_validation(spec, folder / "out", result, data_docs_dir=folder / "docs", current=result.info)
    return {"ok": proof.ok, "artefacts": [str(proof.result_path.parent), str(folder / "docs")]}


def run_proof(folder: Path, result) -> dict[str, object]:  # type: ignore[no-untyped-def]
    from optout.homes import home_for
    from optout.manifest import read_manifest
    from optout.proof import prove
    from optout.spec import load_spec

    spec, out = load_spec(folder / DATA / "spec.yaml"), folder / "out"
    when = {"current": result.info, "now": datetime.now(UTC), "max_age": timedelta(days=1)}
    found = prove(home_for(spec), out, read_manifest(out), result, **when)
    flags = ("uncleared_number_rows", "removed_person_rows", "rows_mismatch", "leaked_values", "schema_changed")
    return {"ok": all(row["hash_ok"] and not any(row[flag] for flag in flags) for row in found.rows)}


def run_scan(folder: Path, result) -> dict[str, object]:  # type: ignore[no-untyped-def]
    from optout.leak_scan import LeakScan

    scan = LeakScan(result.cleared_set)
    scan.file("events", folder / "out" / "extract.parquet")
    return {"ok": not scan.leaks(), "columns": scan.columns_scanned()}


def run_naive(folder: Path, result) -> dict[str, object]:  # type: ignore[no-untyped-def]
    import great_expectations as gx
    import great_expectations.expectations as gxe
    import pandas as pd

    opted_out = np.setdiff1d(result.cohort, result.cleared)
    frame = pd.read_parquet(folder / "out" / "extract.parquet", columns=["nhs_number"])
    root, docs = folder / "naive", folder / "naive_docs"
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


def child(name: str, folder: Path) -> None:
    """Run one contender; print its timing (JSON). Imports and loading the check result are not timed, but
    for the whole-process contenders, which time everything a command would do."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    if name in WHOLE:
        started = time.perf_counter()
        extra = globals()[f"run_{WHOLE[name]}"](folder, check_result(folder))
        extra.pop("artefacts", None)
        print(json.dumps({"seconds": time.perf_counter() - started, **extra}))
        return
    started = time.perf_counter()
    import great_expectations  # noqa: F401
    import pandas  # noqa: F401

    import optout.homes.files.engine  # noqa: F401

    imported = time.perf_counter() - started
    result = check_result(folder)
    started = time.perf_counter()
    extra = globals()[f"run_{name}"](folder, result)
    seconds = time.perf_counter() - started
    artefacts = extra.pop("artefacts", None)
    if artefacts is not None:
        extra["leaked_numbers"] = leaked(artefacts, np.setdiff1d(result.cohort, result.cleared))
    print(json.dumps({"seconds": seconds, "import_seconds": imported, **extra}))


def measure(name: str, folder: Path) -> dict[str, float]:
    return contender.measure([sys.executable, __file__, "--child", name, "--dir", str(folder)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    contender.add_extract_arguments(parser)
    parser.add_argument("--skip-naive", action="store_true", help="the naive suite takes minutes at 10M rows")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.dir)
        return
    with tempfile.TemporaryDirectory(prefix="validate-bench-") as tmp:
        folder = args.dir or Path(tmp)
        (folder / DATA).mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        # In a child: a child's max RSS starts at its parent's, so the parent must stay small.
        people = str(args.people or args.rows // 2)
        command = [sys.executable, FILTER_BENCH, "--generate", str(args.rows), people, str(args.opted_out)]
        subprocess.run([*command, "--dir", str(folder / DATA)], check=True)
        print(f"generated {args.rows:,} rows in {time.perf_counter() - started:.1f}s")
        results = {}
        for name in CONTENDERS:
            if name == "naive" and args.skip_naive:
                continue
            results[name] = measure(name, folder)
            print(f"{name:>7}: {json.dumps(results[name])}", flush=True)
        base = results["filter"]["seconds"]
        scan = results["scan"]
        print(
            f"   scan: {scan['seconds']:.2f}s = {scan['seconds'] / base:.2f}x the filter's {base:.2f}s; "
            f"clean={scan['ok']}; peak {scan['peak_mib']:.0f} MiB"
        )
        proof = results["proof"]
        ratio = proof["seconds"] / base
        print(f"  proof: {proof['seconds']:.2f}s = {ratio:.2f}x the filter's {base:.2f}s; ok={proof['ok']}")
        for name in ("optout", "naive"):
            if name in results:
                r = results[name]
                print(
                    f"{name:>7}: {r['seconds']:.2f}s = {r['seconds'] / base:.2f}x the filter's {base:.2f}s; "
                    f"proof ok={r['ok']}; opted-out numbers in its artefacts: {r['leaked_numbers']:,}; "
                    f"peak {r['peak_mib']:.0f} MiB"
                )
        print(
            f"target: optout <= 0.50x the filter: {'met' if results['optout']['seconds'] <= 0.5 * base else 'MISSED'}"
        )
        whole = results["verify_process"]["seconds"] / results["filter_process"]["seconds"]
        print(f"verify as a whole process: {whole:.2f}x the filter's (GX's import included; target <= 1.0x)")


if __name__ == "__main__":
    main()
