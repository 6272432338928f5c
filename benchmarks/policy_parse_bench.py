"""How much the opt-out cluster policy adds to DAG parsing, and proof that parsing stays light.

Parses the example DAGs (and a synthetic DAG with many tasks) with Airflow's real ``DagBag``, first
with the policy unregistered (the peer: plain Airflow), then with it, in the same process, alternating
rounds so both see the same machine load. Prints median parse times, the ratio and the absolute
overhead per DAG, the import cost of the policy module, and which heavy modules parsing loaded (none
is the target: no pandas, pyarrow, numpy or Great Expectations at parse time).

    .venv/bin/python benchmarks/policy_parse_bench.py [--rounds 15] [--tasks 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "pyarrow", "numpy", "great_expectations", "duckdb", "mesh_client", "polars")
EXAMPLES = ("research_extract.py", "direct_care_share.py", "exempt_disclosure.py")


def _wide_dag(folder: Path, tasks: int) -> Path:
    """One DAG with ``tasks`` filter -> validate -> export chains: the policy walks every one."""
    path = folder / "wide_extract.py"
    path.write_text(
        textwrap.dedent(
            f"""
            from airflow.sdk import DAG
            from optout.airflow.operators.export import GatedExportOperator
            from optout.airflow.operators.filter import OptOutFilterOperator
            from optout.airflow.operators.validate import OptOutValidateOperator
            from optout.airflow.tagging import CPI_TAG

            with DAG(dag_id="wide_extract", schedule=None, tags=[CPI_TAG]):
                for i in range({tasks // 3}):
                    spec = f"/specs/extract_{{i}}.yaml"
                    (
                        OptOutFilterOperator(task_id=f"filter_{{i}}", spec=spec)
                        >> OptOutValidateOperator(task_id=f"validate_{{i}}", spec=spec)
                        >> GatedExportOperator(task_id=f"export_{{i}}", spec=spec, purpose="research")
                    )
            """
        )
    )
    return path


def _parse(paths: list[Path]) -> float:
    from airflow.dag_processing.dagbag import DagBag

    start = time.perf_counter()
    for path in paths:
        bag = DagBag(dag_folder=str(path))
        if bag.import_errors:
            raise SystemExit(f"import errors: {bag.import_errors}")
    return time.perf_counter() - start


def _import_cost() -> tuple[float, float]:
    """Seconds spent importing optout modules, and Airflow's SDK in all, in a fresh interpreter.

    Airflow loads the policy through its entry point while it starts, so ``-X importtime`` is the
    honest measure: the sum of the self time of every ``optout`` module imported.
    """
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import airflow.sdk"],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ,
    )
    ours = total = 0
    for line in out.stderr.splitlines():
        parts = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        total = max(total, int(parts[1]))
        ours += int(parts[0]) if parts[2].startswith("optout") else 0
    return ours / 1e6, total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--tasks", type=int, default=300)
    args = parser.parse_args()
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="optout-bench-airflow-"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

    from airflow import settings

    import optout.airflow.policy as policy

    folder = Path(tempfile.mkdtemp(prefix="optout-policy-bench-"))
    suites = {
        "example DAGs": [ROOT / "dags" / name for name in EXAMPLES],
        f"one DAG, {args.tasks} tasks": [_wide_dag(folder, args.tasks)],
    }
    manager = settings.get_policy_plugin_manager()
    if not manager.is_registered(policy):
        manager.register(policy)
    for label, paths in suites.items():
        _parse(paths)  # warm: imports and caches
        timings: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for with_policy in (False, True):
                if with_policy:
                    manager.register(policy)
                else:
                    manager.unregister(policy)
                timings[with_policy].append(_parse(paths))
        plain, ours = statistics.median(timings[False]), statistics.median(timings[True])
        print(
            f"{label:>22}: plain Airflow {plain * 1000:8.1f} ms, with policy {ours * 1000:8.1f} ms, "
            f"ratio {ours / plain:5.3f}, overhead {(ours - plain) * 1000 / len(paths):6.2f} ms per DAG file"
        )
    ours, total = _import_cost()
    print(f"optout modules imported with Airflow (the policy): {ours * 1000:.1f} ms of {total * 1000:.0f} ms")
    loaded = [name for name in HEAVY if name in sys.modules]
    print(f"heavy modules loaded by parsing: {', '.join(loaded) if loaded else 'none'}")


if __name__ == "__main__":
    main()
