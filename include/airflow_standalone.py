"""Start Airflow standalone with the project's DAGs, the governance page and demo data already refreshed.

    .venv/bin/python include/airflow_standalone.py        # what `make airflow` runs

Everything lives under ``var/`` (git-ignored): Airflow's home and SQLite database, the opt-out store
and the demo extract. The first run refreshes the list from the synthetic sample (test-range NHS
numbers only; the national service's reply is simulated from ``include/sample/opted_out.csv``) and
runs the ``research_extract`` DAG once, so the page shows a fresh list and one proven disclosure.
It prints the URL and the login, then hands over to ``airflow standalone`` (Ctrl-C stops it).
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var"
SAMPLE = ROOT / "include" / "sample"
USER = "admin"


def environment() -> dict[str, str]:
    """Airflow's embedded defaults, pointed at this checkout; the opt-out store beside it."""
    home = VAR / "airflow"
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    port = os.environ.get("AIRFLOW_PORT", "8080")
    return {
        **os.environ,
        # standalone starts `airflow ...` by name: this virtualenv's, whatever the caller's PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__PORT": port,
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "OPTOUT_HOME": str(VAR / "optout"),
        "OPTOUT_STORE_URL": os.environ.get("OPTOUT_STORE_URL") or f"sqlite:///{VAR / 'optout' / 'store.sqlite'}",
    }


def password(env: dict[str, str]) -> str:
    """The admin password: made once, kept owner-only in Airflow's home."""
    path = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    if path.exists():
        return str(json.loads(path.read_text())[USER])
    secret = secrets.token_urlsafe(12)
    path.write_text(json.dumps({USER: secret}))
    path.chmod(0o600)
    return secret


def refresh_demo_list(env: dict[str, str]) -> None:
    """A fresh list version from the sample cohort, unless the current one is still fresh."""
    os.environ.update({k: env[k] for k in ("OPTOUT_HOME", "OPTOUT_STORE_URL")})
    import numpy as np

    from optout.cohort import read_cohort
    from optout.store import Store

    store = Store()
    current = store.current()
    if current is not None and current.is_fresh():
        print(f"opt-out list: version {current.id} is fresh")
        return
    cohort = read_cohort([SAMPLE / "cohort.csv"], "nhs_number").numbers
    with open(SAMPLE / "opted_out.csv", newline="") as handle:
        opted_out = np.array([int(row["nhs_number"]) for row in csv.DictReader(handle)], dtype=np.int64)
    version = store.record_request(cohort, source="include/sample/cohort.csv (make airflow demo)")
    published = store.import_reply(version.id, np.setdiff1d(cohort, opted_out), max_share_jump=1.0)
    print(
        f"opt-out list: version {published.id} refreshed (cohort {published.cohort_count}, "
        f"opted out {published.opted_out_count})"
    )


def run(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "airflow", *args], env=env, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    env = environment()
    secret = password(env)
    print("preparing Airflow's database ...")
    run(env, "db", "migrate")
    refresh_demo_list(env)
    from optout.ledger import Ledger

    if not Ledger(env["OPTOUT_STORE_URL"]).entries(limit=1):
        print("running the research_extract DAG once (filter, validate, gated export) ...")
        run(env, "dags", "reserialize")
        run(env, "dags", "test", "research_extract")
    url = env["AIRFLOW__API__BASE_URL"]
    print(
        f"\n  Airflow:              {url}\n"
        f"  National Data Opt-out: {url}/optout/  (menu: Plugins > National Data Opt-out)\n"
        f"  Login:                {USER} / {secret}\n"
    )
    os.execvpe(sys.executable, [sys.executable, "-m", "airflow", "standalone"], env)


if __name__ == "__main__":
    main()
