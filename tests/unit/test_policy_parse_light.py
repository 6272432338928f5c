"""Parsing the example DAGs with the policy loaded imports no heavy module (fresh interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent(
    """
    import json, sys
    from airflow import settings
    from airflow.dag_processing.dagbag import DagBag
    import optout.airflow.policy as policy

    errors = {}
    for path in sys.argv[1:]:
        errors.update(DagBag(dag_folder=path).import_errors)
    heavy = ("pandas", "pyarrow", "numpy", "great_expectations", "duckdb", "mesh_client", "polars", "pyspark")
    print(json.dumps({
        "registered": settings.get_policy_plugin_manager().is_registered(policy),
        "heavy": [name for name in heavy if name in sys.modules],
        "errors": sorted(errors),
    }))
    """
)


def test_policy_and_example_dags_parse_without_heavy_imports() -> None:
    paths = [
        str(ROOT / "dags" / name)
        for name in ("research_extract.py", "direct_care_share.py", "exempt_disclosure.py", "spark_research_extract.py")
    ]
    broken = ROOT / "tests" / "dags" / "broken"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *paths, str(broken / "no_filter.py"), str(broken / "purpose_misspelt.py")],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["registered"], "the airflow.policy entry point did not load optout.airflow.policy"
    assert report["heavy"] == []
    assert [Path(p).name for p in report["errors"]] == ["no_filter.py", "purpose_misspelt.py"]
