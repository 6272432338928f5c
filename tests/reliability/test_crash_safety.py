"""``kill -9`` at seeded random moments during ``optout check import`` and ``optout filter``.

After every kill the store's current version is the previous one or the new one, whole (loaded and
compared number for number); an output folder is the old extract or the new one, whole (every file
hashes as its manifest says), never half; leftovers beside it are hidden and the next run removes
them; and rerunning succeeds. ``OPTOUT_KILL_POINTS`` sets the kills per test (CI: a few).
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rel_support import (
    assert_version_complete,
    cleared_of,
    cli_env,
    cohort_numbers,
    kill_after,
    run_cli,
    spawn_cli,
    write_reply,
)

from optout.manifest import MANIFEST_NAME, Manifest
from optout.ndop import write_request
from optout.store import Store

KILL_POINTS = int(os.environ.get("OPTOUT_KILL_POINTS", "5"))
COHORT = int(os.environ.get("OPTOUT_CRASH_COHORT", "300000"))
ROWS = int(os.environ.get("OPTOUT_CRASH_ROWS", "1500000"))
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

pytestmark = pytest.mark.slow


def _publish(store: Store, cohort: np.ndarray, cleared: np.ndarray) -> int:
    pending = store.record_request(cohort)
    return store.import_reply(pending.id, cleared).id


def test_kill_during_check_import(store_url: str, tmp_path: Path) -> None:
    rng = random.Random(f"import-{store_url.split(':')[0]}")
    env = cli_env(store_url)
    store = Store(store_url)
    cohort = cohort_numbers(COHORT, seed=7)
    request = tmp_path / "request.dat"
    write_request(request, cohort)
    current = (_publish(store, cohort, cleared_of(cohort, 0.05, seed=0)), cleared_of(cohort, 0.05, seed=0))

    # Calibrate: one whole import, so the kills spread over a real run's life.
    store.record_request(cohort)
    calibration = cleared_of(cohort, 0.05, seed=1)
    process = spawn_cli("check", "import", request, write_reply(tmp_path / "reply-cal.dat", calibration), env=env)
    started = time.perf_counter()
    assert process.wait() == 0, process.communicate()[1]
    duration = time.perf_counter() - started
    current = (store.current().id, calibration)  # type: ignore[union-attr]

    killed = 0
    for point in range(KILL_POINTS):
        pending = store.record_request(cohort)
        cleared = cleared_of(cohort, 0.05, seed=100 + point)
        reply = write_reply(tmp_path / f"reply-{point}.dat", cleared)
        killed += kill_after(spawn_cli("check", "import", request, reply, env=env), rng.uniform(0.05, duration))
        now = store.current()
        assert now is not None
        if now.id == pending.id:  # died after the commit: the new version is whole
            assert_version_complete(store_url, pending.id, cohort, cleared)
        else:  # died before: the previous version is still current and whole, the request still pending
            assert now.id == current[0]
            assert_version_complete(store_url, current[0], cohort, current[1])
            assert store.find_request(local_id=pending.local_id).status == "pending"  # type: ignore[union-attr]
            rerun = run_cli("check", "import", request, reply, env=env)
            assert rerun.returncode == 0, rerun.stderr
            assert store.current().id == pending.id  # type: ignore[union-attr]
            assert_version_complete(store_url, pending.id, cohort, cleared)
        current = (pending.id, cleared)
        for info in store.versions(limit=100):  # no version is left damaged
            store.load(info.id)
    store.dispose()
    print(f"check import ({store_url.split(':')[0]}): {killed} of {KILL_POINTS} kill points hit a running import")
    assert killed >= 1


def _generate(folder: Path) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from filter_bench import generate
    finally:
        sys.path.remove(str(BENCHMARKS))
    generate(folder, ROWS, ROWS // 2, 0.05, seed=3)


def _state(out: Path) -> int | None:
    """The version of a whole extract in ``out`` (None when absent); fails on anything partial."""
    if not out.exists():
        return None
    manifest = Manifest.read(out)
    expected = {table.file: table.sha256 for table in manifest.tables}
    present = {path.name for path in out.iterdir()} - {MANIFEST_NAME}
    assert present == set(expected), f"{out} holds {sorted(present)}, its manifest names {sorted(expected)}"
    for name, digest in expected.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, f"{name} is not what was written"
    return manifest.version_id


def test_kill_during_filter(store_url: str, tmp_path: Path) -> None:
    rng = random.Random(f"filter-{store_url.split(':')[0]}")
    data = tmp_path / "data"
    data.mkdir()
    _generate(data)
    store = Store(store_url)
    cohort = np.load(data / "cohort.npy")
    versions = [_publish(store, cohort, cleared_of(cohort, 0.05, seed=seed)) for seed in (0, 1)]
    env = cli_env(store_url)
    out = tmp_path / "exports" / "extract"

    # Fresh destination: killed part way, it is absent or whole.
    first = spawn_cli("filter", "--spec", data / "spec.yaml", "--out-dir", out, env=env)
    started = time.perf_counter()
    assert first.wait() == 0, first.communicate()[1]
    duration = time.perf_counter() - started
    assert _state(out) == versions[-1]

    killed = 0
    for point in range(KILL_POINTS):
        if point % 2:  # a new version each other time, so the old and new extracts differ
            versions.append(_publish(store, cohort, cleared_of(cohort, 0.05, seed=10 + point)))
        before = _state(out)
        killed += kill_after(
            spawn_cli("filter", "--spec", data / "spec.yaml", "--out-dir", out, env=env), rng.uniform(0.05, duration)
        )
        assert _state(out) in {before, versions[-1]}
        visible = [name for name in os.listdir(out.parent) if name != out.name and not name.startswith(".")]
        assert not visible, f"a consumer could pick up {visible}"
    rerun = run_cli("filter", "--spec", data / "spec.yaml", "--out-dir", out, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert _state(out) == versions[-1]
    assert os.listdir(out.parent) == [out.name], "the rerun left (or did not clean) temporary entries"
    store.dispose()
    print(f"filter ({store_url.split(':')[0]}): {killed} of {KILL_POINTS} kill points hit a running filter")
    assert killed >= 1


_RUN_DAG = """
import sys
from airflow.dag_processing.dagbag import DagBag
run = DagBag(dag_folder=sys.argv[1]).get_dag(sys.argv[2]).test()
sys.exit(0 if str(run.state) == "success" else 3)
"""


def _delivered(outbox: Path) -> list[Path]:
    return [folder for folder in outbox.iterdir() if not folder.name.startswith(".")] if outbox.exists() else []


@pytest.mark.integration
def test_kill_during_gated_export(airflow_db: Path, tmp_path: Path) -> None:
    """A run of the research DAG killed anywhere (filter, validation, copy, ledger, swap): the outbox holds no
    partial delivery, nothing was delivered without its ledger entry, the ledger chain holds, a rerun works."""
    from optout.ledger import Ledger
    from tests.sample_extract import seed

    rng = random.Random("export")
    dag_file = Path(__file__).resolve().parents[2] / "dags" / "research_extract.py"
    seed(Store())
    outbox = Path(os.environ["OPTOUT_HOME"]) / "outbox" / "research_extract"
    command = [sys.executable, "-c", _RUN_DAG, str(dag_file), "research_extract"]
    started = time.perf_counter()
    assert subprocess.run(command, capture_output=True, check=False).returncode == 0
    duration = time.perf_counter() - started
    killed = 0
    points = max(KILL_POINTS - 3, 2)  # each run of the DAG takes ~10 s
    for _ in range(points):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        killed += kill_after(process, rng.uniform(0.5, duration))
        ledger = Ledger()
        ok, _, message = ledger.verify()
        assert ok, message
        recorded = [entry.disclosure.output_hashes for entry in ledger.entries()]
        for folder in _delivered(outbox):  # whole, and recorded
            files = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.iterdir()}
            assert files in recorded, f"{folder.name} was delivered without (or unlike) its ledger entry"
        ledger.dispose()
    assert subprocess.run(command, capture_output=True, check=False).returncode == 0
    assert [p.name for p in outbox.iterdir() if p.name.startswith(".")] == []
    print(f"gated export: {killed} of {points} kill points hit a running DAG")
    assert killed >= 1
