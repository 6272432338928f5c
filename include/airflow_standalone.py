"""Start Airflow standalone with the project's DAGs, the governance page and demo data already refreshed.

    .venv/bin/python include/airflow_standalone.py        # what `make airflow` runs

It shares ``var/demo`` with `make demo` (Airflow's home and SQLite database, the opt-out store, the
extracts). When the list is not fresh it runs the nightly refresh over a local mesh-sandbox with the
stand-in national service, and when no disclosure was recorded yet it runs ``research_extract`` once,
so the page shows a fresh list and one proven disclosure. It prints the URL and the login, then hands
runs ``airflow standalone`` with its parallelism sized to this machine (one task slot per core), in a
process group of its own: Ctrl-C or SIGTERM stops the whole group (scheduler, DAG processor, triggerer,
API server and every task process), killed after 30 seconds if it has not stopped.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from demo import ROOT, airflow, environment, refresh_over_mesh
from process_group import run_group

USER = "admin"


def standalone_environment() -> dict[str, str]:
    """The demo's embedded defaults plus the web server's port and a login made once."""
    env = environment(ROOT / "var" / "demo")
    home = Path(env["AIRFLOW_HOME"])
    port = os.environ.get("AIRFLOW_PORT", "8080")
    cores = str(max(2, os.cpu_count() or 2))
    return {
        **env,
        "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", cores),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": os.environ.get("AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES", "1"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__PORT": port,
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
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


def approve_demo_exemption() -> None:
    """Record the approval the example exempt DAG cites (as governance staff would), so triggering
    `exempt_disclosure` sends; without it the gate refuses, as it should."""
    from datetime import UTC, datetime, timedelta

    from optout.governance.approvals import VALID, ApprovalRegister

    register = ApprovalRegister()
    try:
        known = register.approvals().get("HC-ORDER-2026-A17")
        if known is None or known.state() != VALID:
            expires = (datetime.now(UTC) + timedelta(days=365)).date()
            register.add(
                "HC-ORDER-2026-A17",
                basis="court_order",
                approved_by="Caldicott Guardian (demo)",
                expires=expires,
                note="the demo's court order",
                recorded_by="make airflow",
            )
    finally:
        register.dispose()


def main() -> None:
    env = standalone_environment()
    secret = password(env)
    print("preparing Airflow's database ...")
    airflow(env, "db", "migrate")
    os.environ.update({key: env[key] for key in ("OPTOUT_HOME", "OPTOUT_STORE_URL")})
    from optout.ledger import Ledger
    from optout.store import Store

    current = Store().current()
    if current is None or not current.is_fresh():
        print("refreshing the opt-out list over the local MESH sandbox ...")
        refresh_over_mesh(env)
    if not Ledger().entries(limit=1):
        print("running the research_extract DAG once (filter, validate, gated export) ...")
        airflow(env, "dags", "test", "research_extract")
    approve_demo_exemption()
    url = env["AIRFLOW__API__BASE_URL"]
    print(
        f"\n  Airflow:               {url}\n"
        f"  National Data Opt-out: {url}/optout/  (sidebar: National Data Opt-out)\n"
        f"  Login:                 {USER} / {secret}\n"
    )
    sys.exit(run_group([sys.executable, "-m", "airflow", "standalone"], env))


if __name__ == "__main__":
    main()
