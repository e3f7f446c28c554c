"""A real Spark standalone cluster for tests: one master and one worker on 127.0.0.1,
started from the pyspark wheel's own launcher (``$SPARK_HOME/bin/spark-class``, the
installed pyspark package being ``SPARK_HOME``), as a cluster's nodes run them.

:func:`start` waits until the worker has registered with the master (the master's JSON at
``http://127.0.0.1:<web port>/json/``), and fails with one line naming the master address
and its log when it does not; :func:`stop` ends exactly the two JVMs it started (the worker
ends the executors it launched).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
# Heap of the master and worker daemons themselves (not of the executors).
DAEMON_MEMORY = "256m"


class ClusterError(RuntimeError):
    """The cluster did not come up: one line naming the master and the log to read."""


@dataclass
class Cluster:
    url: str  # spark://127.0.0.1:<port>, the master of the Airflow connection
    web_url: str  # the master's web UI; its JSON at <web_url>/json/
    master: subprocess.Popen
    worker: subprocess.Popen
    home: Path  # logs/ (master.log, worker.log) and work/ (the executors' folders)

    def state(self) -> dict:
        """The master's JSON: workers, active and completed applications."""
        with urllib.request.urlopen(f"{self.web_url}/json/", timeout=5) as response:
            return json.load(response)

    def completed_apps(self) -> list[dict]:
        return self.state()["completedapps"]


def spark_home() -> Path:
    """The installed pyspark package: its ``bin/``, ``sbin/`` and ``jars/`` make a Spark."""
    import pyspark

    return Path(pyspark.__file__).parent


def start(
    home: Path,
    port: int,
    web_port: int,
    worker_web_port: int,
    cores: int = 1,
    memory: str = "1g",
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> Cluster:
    """Start a master on ``127.0.0.1:port`` and one worker of ``cores`` and ``memory``, and
    wait until the worker has registered (the JVMs start slowly on a busy machine).

    Args:
        home: the cluster's folder (logs, the worker's work dir).
        env: the daemons' environment (default: this process's); executors inherit the
            worker's, as on a cluster node (e.g. AWS_* instead of an instance role).

    Raises:
        ClusterError: a daemon exited, or no worker registered within ``timeout`` seconds;
            both daemons are stopped first.
    """
    logs, work = home / "logs", home / "work"
    logs.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    spark = spark_home()
    daemon_env = {
        **(os.environ if env is None else env),
        "SPARK_HOME": str(spark),
        "SPARK_LOCAL_IP": HOST,
        "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
        "SPARK_LOG_DIR": str(logs),
        "SPARK_WORKER_DIR": str(work),
        "PYSPARK_PYTHON": sys.executable,
    }
    url, web_url = f"spark://{HOST}:{port}", f"http://{HOST}:{web_port}"
    spark_class = str(spark / "bin" / "spark-class")
    master = _daemon(
        [spark_class, MASTER_CLASS, "--host", HOST, "--port", str(port),
         "--webui-port", str(web_port)],
        logs / "master.log", daemon_env,
    )  # fmt: skip
    worker = _daemon(
        [spark_class, WORKER_CLASS, url, "--host", HOST, "--cores", str(cores),
         "--memory", memory, "--webui-port", str(worker_web_port), "--work-dir", str(work)],
        logs / "worker.log", daemon_env,
    )  # fmt: skip
    cluster = Cluster(url, web_url, master, worker, home)
    try:
        _wait_for_worker(cluster, timeout)
    except ClusterError:
        stop(cluster)
        raise
    return cluster


def _daemon(command: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen:
    # spark-class execs the JVM: the Popen's pid is the daemon's own.
    with log.open("ab") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(env)
        )


def _wait_for_worker(cluster: Cluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in (("master", cluster.master), ("worker", cluster.worker)):
            if proc.poll() is not None:
                raise ClusterError(
                    f"the Spark {name} of {cluster.url} exited with code {proc.returncode}: "
                    f"see {cluster.home / 'logs' / f'{name}.log'}"
                )
        try:
            if cluster.state().get("aliveworkers", 0) >= 1:
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass  # the master's web UI is not up yet
        time.sleep(1)
    raise ClusterError(
        f"no worker registered with the Spark master {cluster.url} within {timeout:.0f} s: "
        f"see {cluster.home / 'logs'}/master.log and worker.log"
    )


def stop(cluster: Cluster, timeout: float = 60) -> None:
    """Stop the worker (it kills the executors it launched), then the master."""
    for proc in (cluster.worker, cluster.master):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
