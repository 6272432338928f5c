"""`make demo`: the main job on embedded defaults, start to finish, on synthetic data.

1. the synthetic sample in ``include/sample`` (test-range 999 NHS numbers only, so no real person);
2. a local mesh-sandbox and a stand-in for the national service, which replies with the cohort minus
   ``include/sample/opted_out.csv`` after a "job created" acknowledgement, like the real one;
3. the ``optout_nightly_refresh`` DAG: send the cohort over MESH, wait for the reply, import it;
4. the ``research_extract`` DAG: filter, prove with Great Expectations, gated export, ledger entry;
5. a summary, in counts only.

Everything is kept under ``var/demo`` (git-ignored): Airflow's home and SQLite database, the store,
the outputs. Run it again to see a second refresh and a second disclosure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "include" / "sample"


def environment(var: Path) -> dict[str, str]:
    """Airflow and the store on embedded defaults (SQLite, local files) under ``var``."""
    home = var / "airflow"
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "OPTOUT_HOME": str(var / "optout"),
        "OPTOUT_REPLY_POKE_SECONDS": "2",  # the stand-in replies in seconds, not hours
        "OPTOUT_STORE_URL": os.environ.get("OPTOUT_STORE_URL") or f"sqlite:///{var / 'optout' / 'store.sqlite'}",
    }


def airflow(env: dict[str, str], *args: str) -> None:
    """One `airflow` command; its output goes to a log file, shown only when it fails."""
    log = Path(env["AIRFLOW_HOME"]) / "demo-commands.log"
    with log.open("a") as handle:
        done = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, stdout=handle, stderr=handle)
    if done.returncode:
        sys.exit(f"`airflow {' '.join(args)}` failed (exit {done.returncode}); see {log}")


def refresh_over_mesh(env: dict[str, str]) -> None:
    """Run the nightly refresh DAG against a local mesh-sandbox and the stand-in national service."""
    from optout.sandbox import server
    from optout.sandbox.standin import StandIn, read_opt_outs

    with server.running() as sandbox:
        stand_in = StandIn(sandbox.settings(mailbox=server.SERVICE_MAILBOX), read_opt_outs(SAMPLE / "opted_out.csv"))
        thread = stand_in.start_thread()
        try:
            conf = {"cohort_paths": [str(SAMPLE / "cohort.csv")], "id_column": "nhs_number"}
            print(f"  mesh-sandbox at {sandbox.url}; stand-in answering in mailbox {server.SERVICE_MAILBOX}")
            airflow(
                {**env, "AIRFLOW_CONN_MESH_DEFAULT": sandbox.airflow_connection()},
                "dags", "test", "optout_nightly_refresh", "--conf", json.dumps(conf),
            )  # fmt: skip
        finally:
            stand_in.stop()
            thread.join(10)


def summary(env: dict[str, str]) -> None:
    """What a governance officer would want to know, in counts only."""
    os.environ.update({key: env[key] for key in ("OPTOUT_HOME", "OPTOUT_STORE_URL")})
    from optout.ledger import Ledger
    from optout.store import Store

    current = Store().current()
    entries = Ledger().entries()
    print("\nSummary")
    if current is not None:
        print(
            f"  opt-out list: version {current.id}, cohort {current.cohort_count}, cleared {current.cleared_count}, "
            f"opted out {current.opted_out_count}"
        )
    for entry in entries[-1:]:
        d = entry.disclosure
        print(
            f"  last disclosure: {d.extract!r} for {d.purpose} to {d.recipient}, list version {d.version_id}: "
            f"{d.rows_in} rows in, {d.rows_out} out; rows removed by reason "
            f"({', '.join(f'{k} {v}' for k, v in d.removed_rows.items() if v)}), {d.removed_people} people removed; "
            f"validation {'passed' if d.validation_ok else 'FAILED'}"
        )
        if d.data_docs:
            print(f"  its proof (Data Docs): {d.data_docs}")
    _, _, message = Ledger().verify()
    print(f"  ledger: {message}")
    print(f"  sent files: {Path(env['OPTOUT_HOME']) / 'outbox'}")
    print("  more: `optout status`, `optout ledger export --format csv`, `make airflow` for the governance page")


def main() -> None:
    env = environment(ROOT / "var" / "demo")
    print("1/4 preparing Airflow's database (SQLite) ...")
    airflow(env, "db", "migrate")
    print("2/4 nightly refresh over MESH (local sandbox, stand-in national service) ...")
    refresh_over_mesh(env)
    print("3/4 research extract: filter, Great Expectations proof, gated export ...")
    airflow(env, "dags", "test", "research_extract")
    print("4/4 done")
    summary(env)


if __name__ == "__main__":
    main()
