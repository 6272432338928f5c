"""No NHS number and no secret anywhere the system writes or prints.

The CLI flow (request, import, status, filter, verify, and a run of refusals and bad inputs) is scanned
whole: every stdout/stderr and every file written, apart from the inputs, the request and reply files,
the store and the extract's own tables (which hold cleared numbers by design, and are checked to hold
no opted-out one). Numbers are looked for plain, spaced (3-3-4) and dashed. Expected: zero.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from rel_support import cleared_of, cli_env, cohort_numbers, find_numbers, run_cli, scan_tree, write_cohort, write_reply

from optout.manifest import Manifest
from optout.pseudonym import Key, hash_numbers, hex_digests

HMAC_KEY = "reliability-hmac-key-5c1e7a9d"  # a secret: must never be printed or written


def _spaced(number: int) -> str:
    text = str(number)
    return f"{text[:3]} {text[3:6]} {text[6:]}"


def _dashed(number: int) -> str:
    text = str(number)
    return f"{text[:3]}-{text[3:6]}-{text[6:]}"


def _inputs(folder: Path, cohort: np.ndarray, unchecked: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    people = np.concatenate([cohort, unchecked])
    shapes: list[Callable[[int], str]] = [str, _spaced, _dashed]
    pacsv.write_csv(
        pa.table(
            {
                "person_id": [f"P{i:05d}" for i in range(len(people))],
                "nhs_number": [shapes[i % 3](int(n)) for i, n in enumerate(people)],
            }
        ),
        folder / "patients.csv",
    )
    pacsv.write_csv(
        pa.table({"person_id": [f"P{i:05d}" for i in range(len(people))], "code": ["E11"] * len(people)}),
        folder / "episodes.csv",
    )
    digests = hex_digests(hash_numbers(people, Key(HMAC_KEY)))
    pacsv.write_csv(pa.table({"pseudo": digests, "score": list(range(len(people)))}), folder / "linked.csv")
    (folder / "spec.yaml").write_text(
        "name: leak_check\npurpose: research\ntables:\n"
        "  - {name: patients, path: patients.csv, nhs_number: nhs_number, person_key: person_id}\n"
        "  - {name: episodes, path: episodes.csv, person_key: person_id}\n"
        "  - {name: linked, path: linked.csv, nhs_number: pseudo, pseudonymised: {key_env: OPTOUT_TEST_HMAC}}\n"
    )
    (folder / "wrong_column.yaml").write_text(
        "name: bad\npurpose: research\ntables:\n  - {name: patients, path: patients.csv, nhs_number: nhs}\n"
    )
    return folder / "spec.yaml"


def test_cli_flow_prints_and_writes_no_number_or_key(tmp_path: Path) -> None:
    cohort = cohort_numbers(400, seed=61)
    unchecked = np.setdiff1d(cohort_numbers(450, seed=62), cohort)[:30]
    everyone = np.union1d(cohort, unchecked)
    env = cli_env(f"sqlite:///{tmp_path / 'store' / 'store.sqlite'}", OPTOUT_TEST_HMAC=HMAC_KEY)
    spec = _inputs(tmp_path / "in", cohort, unchecked)
    request, out = tmp_path / "request.dat", tmp_path / "exports" / "extract"
    cleared = cleared_of(cohort, 0.05, seed=63)
    reply = write_reply(tmp_path / "reply.dat", cleared)
    stranger = write_reply(tmp_path / "stranger.dat", np.concatenate([cleared[:5], unchecked[:1]]))
    cohort_file = write_cohort(tmp_path / "cohort.csv", cohort)
    runs = [
        run_cli("check", "request", cohort_file, "--id-column", "nhs_number", "--out", request, env=env),
        run_cli("check", "import", request, stranger, env=env),  # refused: a number never requested
        run_cli("check", "import", request, reply, env=env),
        run_cli("check", "versions", env=env),
        run_cli("status", env=env),
        run_cli("status", "--json", env=env),
        run_cli("filter", "--spec", spec, "--out-dir", out, env=env),
        run_cli("verify", "--spec", spec, "--dir", out, env=env),
        run_cli("filter", "--spec", tmp_path / "in" / "wrong_column.yaml", "--out-dir", tmp_path / "x", env=env),
        run_cli("filter", "--spec", spec, "--out-dir", tmp_path / "y", env={**env, "OPTOUT_TEST_HMAC": "wrong-key"}),
        run_cli("filter", "--spec", spec, "--out-dir", tmp_path / "z", env={**env, "OPTOUT_MAX_AGE": "1s"}),
    ]
    codes = [run.returncode for run in runs]
    assert codes[:8] == [0, 2, 0, 0, 0, 0, 0, 0], [(r.returncode, r.stderr) for r in runs]
    assert all(code != 0 for code in codes[8:]), [(r.returncode, r.stderr) for r in runs[8:]]
    printed = "".join(run.stdout + run.stderr for run in runs)
    assert "Traceback" not in printed
    assert find_numbers(printed, everyone) == 0
    assert HMAC_KEY not in printed

    manifest = Manifest.read(out)
    tables = [out / table.file for table in manifest.tables]
    skip = [tmp_path / "in", tmp_path / "cohort.csv", request, reply, stranger, tmp_path / "store", *tables]
    assert scan_tree([tmp_path], everyone, skip=skip) == {}
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not any(s in p.parents or s == p for s in skip)]
    assert written, "nothing scanned"
    assert not [str(p) for p in written if HMAC_KEY.encode() in p.read_bytes()]
    opted_out = np.setdiff1d(cohort, cleared)
    for table in tables:  # the tables hold numbers by design: never an opted-out or unchecked one
        assert find_numbers(table.read_bytes(), np.union1d(opted_out, unchecked)) == 0
    print(f"no-leak (CLI): {len(runs)} commands, {len(written)} files scanned, 0 numbers, 0 keys")


def _metadata_text(database: Path) -> tuple[bytes, int]:
    """Every value of every column of every table of the Airflow metadata DB (XCom, rendered fields, conf...)."""
    import sqlite3

    chunks, cells = [], 0
    with sqlite3.connect(database) as conn:
        tables = [row[0] for row in conn.execute("select name from sqlite_master where type = 'table'")]
        for table in tables:
            for row in conn.execute(f'select * from "{table}"'):
                for value in row:
                    if value is None:
                        continue
                    cells += 1
                    chunks.append(value if isinstance(value, bytes) else str(value).encode())
                    if isinstance(value, bytes) and value[:2] in {b"x\x9c", b"x\x01", b"x\xda"}:
                        import zlib  # compressed serialised DAGs: look inside too

                        chunks.append(zlib.decompress(value))
    return b"\n".join(chunks), cells


@pytest.mark.integration
@pytest.mark.slow
def test_dags_and_refresh_leave_no_number_or_secret_anywhere(  # type: ignore[no-untyped-def]
    load_dag, airflow_db, mesh_sandbox, mesh_connection, cohort_db, stand_in, capfd, tmp_path, monkeypatch
) -> None:
    from optout.governance import overview, render
    from optout.store import Store
    from tests.integration.test_refresh import cohort_numbers as refresh_cohort
    from tests.integration.test_refresh import run_refresh
    from tests.sample_extract import SAMPLE, approve_court_order, numbers, opted_out, seed

    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("OPTOUT_MAX_AGE", "48h")
    seed(Store())  # the sample extract's version: the example DAGs use it
    approve_court_order()
    runs = {
        "research_extract": load_dag(root / "dags" / "research_extract.py", "research_extract").test(),
        "direct_care_share": load_dag(root / "dags" / "direct_care_share.py", "direct_care_share").test(),
        "exempt_disclosure": load_dag(root / "dags" / "exempt_disclosure.py", "exempt_disclosure").test(),
        "refused": load_dag(root / "tests" / "dags" / "send_time_checks.py", "send_time_checks").test(
            run_conf={"tamper": "plant", "outbox": str(tmp_path / "outbox")}
        ),
    }
    assert runs["research_extract"].state == "success"
    refreshed = refresh_cohort(300, offset=77_000)
    cohort_db(refreshed)
    stand_in(refreshed[::6])  # about the sample's opted-out share, so the reply is not quarantined
    run, tis = run_refresh(load_dag)
    assert run.state == "success", {k: str(v.state) for k, v in tis.items()}
    everyone = np.union1d(np.union1d(numbers(SAMPLE / "patients.csv"), numbers(SAMPLE / "cohort.csv")), refreshed)
    captured = capfd.readouterr()
    printed = captured.out + captured.err
    assert find_numbers(printed, everyone) == 0

    logs = [p for p in (airflow_db / "logs").rglob("*") if p.is_file()]
    assert sum(find_numbers(p.read_bytes(), everyone) for p in logs) == 0
    metadata, cells = _metadata_text(airflow_db / "airflow.db")
    assert find_numbers(metadata, everyone) == 0
    page = render(overview())
    assert find_numbers(page, everyone) == 0

    # What the system wrote in its data folder: manifests, validation results, Data Docs, the outbox.
    home = Path(os.environ["OPTOUT_HOME"])
    tables = {"patients.csv", "episodes.csv"}
    written = [p for p in home.rglob("*") if p.is_file() and not p.name.startswith("store.sqlite")]
    assert find_numbers(b"".join(p.read_bytes() for p in written if p.name not in tables), everyone) == 0
    research = [p for p in written if p.name in tables and "research" in str(p)]
    assert research and sum(find_numbers(p.read_bytes(), opted_out()) for p in research) == 0

    password = json.loads(mesh_connection)["password"]
    assert len(password) >= 4
    for blob in (printed.encode(), metadata, page.encode(), *(p.read_bytes() for p in logs)):
        assert password.encode() not in blob
    print(
        f"no-leak (Airflow): {len(logs)} log files, {cells} metadata cells, {len(written)} data files, "
        f"{len(printed)} characters of output: 0 numbers, 0 passwords"
    )
