"""Races between processes, on SQLite and PostgreSQL: two imports of one reply (one wins, the other fails
cleanly), two imports of different versions (both land), and filters reading while imports publish
(each filter used one whole version)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
from rel_support import (
    assert_version_complete,
    cleared_of,
    cli_env,
    cohort_numbers,
    run_cli,
    spawn_cli,
    write_cohort,
    write_reply,
)

from optout.manifest import Manifest
from optout.ndop import write_request
from optout.store import Store

COHORT = 200_000


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    _, err = process.communicate(timeout=300)
    return process.returncode, err.decode()


def test_two_imports_of_one_reply_one_wins(store_url: str, tmp_path: Path) -> None:
    env = cli_env(store_url)
    store = Store(store_url)
    cohort = cohort_numbers(COHORT, seed=31)
    request = tmp_path / "request.dat"
    write_request(request, cohort)
    for round_ in range(3):
        pending = store.record_request(cohort)
        cleared = cleared_of(cohort, 0.05, seed=round_)
        reply = write_reply(tmp_path / f"reply{round_}.dat", cleared)
        racers = [spawn_cli("check", "import", request, reply, env=env) for _ in range(2)]
        outcomes = sorted(_finish(racer) for racer in racers)
        assert outcomes[0][0] == 0, outcomes
        code, message = outcomes[1]
        assert code in {1, 2} and message.startswith("optout: ") and "Traceback" not in message, outcomes
        assert "another process" in message or "is published" in message, message
        assert store.current().id == pending.id  # type: ignore[union-attr]
        assert_version_complete(store_url, pending.id, cohort, cleared)
    store.dispose()


def test_two_imports_of_different_versions_both_land(store_url: str, tmp_path: Path) -> None:
    env = cli_env(store_url)
    store = Store(store_url)
    jobs = []
    for index in range(2):
        cohort = cohort_numbers(COHORT, seed=40 + index)
        request = tmp_path / f"request{index}.dat"
        write_request(request, cohort)
        pending = store.record_request(cohort)
        cleared = cleared_of(cohort, 0.05, seed=index)
        jobs.append((pending.id, cohort, cleared, request, write_reply(tmp_path / f"reply{index}.dat", cleared)))
    racers = [spawn_cli("check", "import", job[3], job[4], env=env) for job in jobs]
    assert [_finish(racer)[0] for racer in racers] == [0, 0]
    for version_id, cohort, cleared, *_ in jobs:
        assert_version_complete(store_url, version_id, cohort, cleared)
    assert store.current().id in {job[0] for job in jobs}  # type: ignore[union-attr]
    store.dispose()


_PUBLISHER = """
import sys
import numpy as np
from optout.store import Store
store = Store(sys.argv[1])
cohort = np.load(sys.argv[2])
for seed in range(int(sys.argv[3])):
    keep = np.random.default_rng(seed).random(len(cohort)) >= 0.05
    store.import_reply(store.record_request(cohort).id, cohort[keep])
"""


def test_filters_read_one_whole_version_while_imports_publish(store_url: str, tmp_path: Path) -> None:
    env = cli_env(store_url)
    store = Store(store_url)
    cohort = cohort_numbers(COHORT, seed=50)
    np.save(tmp_path / "cohort.npy", cohort)
    store.import_reply(store.record_request(cohort).id, cleared_of(cohort, 0.05, seed=99))
    write_cohort(tmp_path / "in" / "patients.csv", cohort)
    spec = tmp_path / "in" / "spec.yaml"
    spec.write_text(
        "name: race\npurpose: research\ntables:\n  - {name: p, path: patients.csv, nhs_number: nhs_number}\n"
    )
    publisher = subprocess.Popen([sys.executable, "-c", _PUBLISHER, store_url, str(tmp_path / "cohort.npy"), "6"])
    seen: set[int] = set()
    runs = 0
    while publisher.poll() is None or runs < 2:
        out = tmp_path / "out" / str(runs)
        result = run_cli("filter", "--spec", spec, "--out-dir", out, env=env)
        assert result.returncode == 0, result.stderr
        version = Manifest.read(out).version_id
        assert version is not None
        cleared = store.load(version).cleared
        kept = pacsv.read_csv(out / "patients.csv").column("nhs_number").to_numpy().astype(np.int64)
        assert np.array_equal(np.sort(kept), cleared), f"run {runs} mixed versions"  # exactly that version's
        seen.add(version)
        runs += 1
    assert publisher.wait() == 0
    store.dispose()
    print(f"{runs} filters during publishing saw versions {sorted(seen)}")
