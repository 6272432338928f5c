"""docker-compose.yaml and the Dockerfile, checked against the code (no Docker engine needed).

Every service's command must parse with the real CLI (Airflow's parser with the Celery provider, our
Typer app), every setting must be one the code reads, builds must name existing files and stages, and
services must point at each other by the names and ports the file gives them.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
SERVICES = AIRFLOW_SERVICES | {"postgres", "redis", "mesh-sandbox", "optout-standin", "spark-connect"}


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def env(name: str) -> dict[str, str]:
    """A service's environment with ``${VAR:-default}`` replaced by the default, as compose would."""
    raw = services()[name].get("environment", {})
    return {key: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value)) for key, value in raw.items()}


def dockerfile_stages() -> dict[str, list[str]]:
    """Stage name -> its instruction lines."""
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line.strip(), re.IGNORECASE)
        if match:
            current = stages.setdefault(match.group(1), [])
        elif line.strip() and not line.lstrip().startswith("#"):
            current.append(line.strip())
    return stages


def test_the_stack_has_every_service() -> None:
    assert set(services()) == SERVICES
    assert services()["airflow-worker"]["command"][:3] == ["airflow", "celery", "worker"]
    for name in AIRFLOW_SERVICES:
        assert env(name)["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_builds_name_existing_files_and_stages() -> None:
    stages = dockerfile_stages()
    for name, service in services().items():
        if "build" not in service:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image's tag"
            continue
        build = service["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
        assert build["target"] in stages, f"{name}: no stage {build['target']!r} in the Dockerfile"
    for lines in stages.values():
        for line in lines:
            if line.upper().startswith("COPY"):
                for source in shlex.split(line)[1:-1]:
                    assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
    assert any("pip install -r requirements.txt" in line for line in stages["airflow"])
    assert any("requirements-mesh-sandbox.txt" in line for line in stages["mesh-sandbox"])
    assert not any("requirements.txt" in line.split() for line in stages["mesh-sandbox"])


def test_dependencies_and_mounts_exist() -> None:
    for name, service in services().items():
        for needed in service.get("depends_on", {}):
            assert needed in services(), f"{name} depends on unknown service {needed}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in compose()["volumes"], f"{name} uses undeclared volume {source}"


def _airflow_check(commands: list[list[str]], settings: list[str], home: Path) -> dict[str, list[str]]:
    """Parse commands with Airflow's own CLI parser and look settings up in its config, in a child process
    configured like the stack (the Celery commands and settings exist only under the CeleryExecutor)."""
    script = """
import json, sys
from airflow.cli.cli_parser import get_parser
from airflow.configuration import conf
conf.load_providers_configuration()
commands, settings = json.loads(sys.argv[1])
bad_commands, bad_settings = [], []
for command in commands:
    try:
        get_parser().parse_args(command)
    except SystemExit:
        bad_commands.append(" ".join(command))
for name in settings:
    _, section, key = name.split("__", 2)
    known = conf.configuration_description.get(section.lower(), {}).get("options", {})
    if key.lower() not in known:
        bad_settings.append(name)
print(json.dumps({"commands": bad_commands, "settings": bad_settings}))
"""
    child_env = {
        "PATH": "/usr/bin:/bin",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps([commands, settings])],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_airflow_commands_and_settings_are_real(tmp_path: Path) -> None:
    commands = [services()[name]["command"][1:] for name in sorted(AIRFLOW_SERVICES)]
    settings = sorted({key for name in AIRFLOW_SERVICES for key in env(name) if key.startswith("AIRFLOW__")})
    assert _airflow_check(commands, settings, tmp_path) == {"commands": [], "settings": []}


def _resolve_typer(args: list[str]) -> None:
    """Walk our Typer app down to the command and parse its options (raises if either is wrong), without
    running it. Typer vendors its own click, so groups are told apart by having subcommands."""
    import typer

    from optout.cli import app

    command: Any = typer.main.get_command(app)
    ctx = command.make_context("optout", [], resilient_parsing=True)
    rest = list(args)
    while hasattr(command, "commands"):
        name, rest = rest[0], rest[1:]
        sub = command.get_command(ctx, name)
        assert sub is not None, f"optout has no command {name!r}"
        command = sub
        if hasattr(command, "commands"):
            ctx = command.make_context(name, [], parent=ctx, resilient_parsing=True)
        else:
            command.make_context(name, rest, parent=ctx)


def test_standin_runs_our_cli_against_the_sandbox_service() -> None:
    from optout.cli.sandbox import URL_ENV
    from optout.sandbox import server

    standin = services()["optout-standin"]
    shell = standin["command"]
    assert shell[:2] == ["sh", "-c"]
    optout_args = shlex.split(shell[2].split("exec ", 1)[1])
    assert optout_args[:3] == ["optout", "sandbox", "serve"]
    _resolve_typer(optout_args[1:])
    assert (ROOT / "include" / "sample" / "opted_out.csv").is_file()
    url = urlsplit(env("optout-standin")[URL_ENV])
    sandbox = services()["mesh-sandbox"]
    assert url.hostname == "mesh-sandbox"
    assert sandbox["command"][-1] == str(url.port)
    assert "mesh_sandbox.api:app" in sandbox["command"] and "mesh_sandbox.api:app" in Path(server.__file__).read_text()
    expected = {"STORE_MODE": "memory", "AUTH_MODE": "full", "SHARED_KEY": server.SHARED_KEY, "ENV": "local"}
    assert env("mesh-sandbox") == expected


def test_airflow_reaches_mesh_through_the_connection_the_hook_reads() -> None:
    from optout.airflow.hooks.mesh import MeshHook
    from optout.sandbox.server import Sandbox

    variable = f"AIRFLOW_CONN_{MeshHook.default_conn_name.upper()}"
    expected = json.loads(Sandbox(url="http://mesh-sandbox:8700", pid=0, log_path="").airflow_connection())
    for name in AIRFLOW_SERVICES:
        assert json.loads(env(name)[variable]) == expected


def test_optout_settings_are_the_ones_the_code_reads() -> None:
    code = "\n".join(path.read_text() for path in (ROOT / "plugins" / "optout").rglob("*.py"))
    for name in SERVICES:
        for key in env(name):
            if key.startswith("OPTOUT_"):
                assert f'"{key}"' in code, f"{name} sets {key}, which no code reads"
    from optout import config

    worker = env("airflow-worker")
    assert config.parse_duration(worker["OPTOUT_MAX_AGE"])
    assert urlsplit(worker["OPTOUT_STORE_URL"]).path == "/optout"
    assert "CREATE DATABASE optout" in (ROOT / "docker" / "initdb" / "optout.sql").read_text()


@pytest.mark.parametrize("name", sorted(AIRFLOW_SERVICES))
def test_airflow_services_point_at_the_right_services(name: str) -> None:
    settings = env(name)
    assert urlsplit(settings["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).hostname == "postgres"
    assert urlsplit(settings["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis"
    api = urlsplit(settings["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert api.hostname == "airflow-apiserver" and api.path == "/execution/"
    assert str(api.port) == services()["airflow-apiserver"]["command"][-1]
    assert settings["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/optout/dags"


def test_spark_connect_is_the_server_the_spark_example_reaches() -> None:
    """The spark-connect service runs the pinned client's Spark version in the foreground on the port the
    Airflow connection names; the connection is the one the example spec names, of the provider's type; the
    server sees the sample and the data folder at the Airflow workers' paths."""
    from airflow.providers.apache.spark.hooks.spark_connect import SparkConnectHook

    from optout.spec import load_spec

    spark = services()["spark-connect"]
    pinned = re.search(r"^pyspark\[connect\]==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert pinned is not None and spark["image"] == f"apache/spark:{pinned.group(1)}"
    command = spark["command"]
    assert command[0] == "/opt/spark/sbin/start-connect-server.sh" and env("spark-connect")["SPARK_NO_DAEMONIZE"]
    settings = dict(arg.split("=", 1) for arg in command if "=" in arg)
    port = int(settings["spark.connect.grpc.binding.port"])
    assert spark["ports"] == [f"{port}:{port}"]
    spec = load_spec(ROOT / "include" / "specs" / "spark_research_extract.yaml")
    assert spec.engine == "spark" and spec.spark_connection == SparkConnectHook.default_conn_name
    variable = f"AIRFLOW_CONN_{SparkConnectHook.default_conn_name.upper()}"
    for name in AIRFLOW_SERVICES:
        connection = json.loads(env(name)[variable])
        assert connection == {"conn_type": SparkConnectHook.conn_type, "host": "spark-connect", "port": port}
    home = env("airflow-worker")["OPTOUT_HOME"]
    assert f"optout-data:{home}" in spark["volumes"] and "./include:/opt/optout/include:ro" in spark["volumes"]
    assert "COPY include ./include" in (ROOT / "Dockerfile").read_text()
