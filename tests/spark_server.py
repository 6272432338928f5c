"""A real Spark Connect server from the pip package, on a free loopback port, for the Spark tests.

``pyspark`` ships Spark's jars; its ``spark-submit`` starts ``SparkConnectServer`` in the foreground and
execs Java, so the PID we hold is the server's own. Small memory settings: the machine is shared.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CONNECT_SERVER = "org.apache.spark.sql.connect.service.SparkConnectServer"
START_SECONDS = 180


@dataclass(frozen=True)
class SparkServer:
    url: str
    pid: int
    log: Path
    warehouse: Path


class SparkServerError(RuntimeError):
    pass


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(folder: Path, *, memory: str = "1g", cores: int = 2) -> SparkServer:
    """Start the server with its scratch, warehouse and log under ``folder``; wait until it listens."""
    if shutil.which("java") is None:
        raise SparkServerError("java is not installed (make installs openjdk-17-jre-headless)")
    home = spark_home()
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    warehouse = folder / "warehouse"
    settings = {
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.local.dir": str(folder / "scratch"),
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.driver.extraJavaOptions": f"-Djava.io.tmpdir={folder / 'scratch'}",
    }
    command = [str(home / "bin" / "spark-submit"), "--class", CONNECT_SERVER, "--master", f"local[{cores}]"]
    command += ["--driver-memory", memory]
    for key, value in settings.items():
        command += ["--conf", f"{key}={value}"]
    command.append("spark-internal")
    log = folder / "server.log"
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(folder)}
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SparkServerError(f"the Spark Connect server exited with {process.returncode}; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return SparkServer(f"sc://127.0.0.1:{port}", process.pid, log, warehouse)
        except OSError:
            time.sleep(0.5)
    stop(process.pid)
    raise SparkServerError(f"the Spark Connect server did not listen within {START_SECONDS}s; see {log}")


def stop(pid: int, *, grace: float = 30.0) -> None:
    """Stop the server by its PID: TERM, then KILL after ``grace`` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if finished:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
