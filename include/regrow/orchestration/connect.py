"""regrow's local Spark Connect server: one warm JVM that DAG tasks, the CLI, DVC stages,
the demo and the tests run their Spark work on, instead of starting a JVM each.

It is the server that ships in the pyspark wheel (its Connect jar, run by Spark's own
``spark-daemon.sh`` as ``sbin/start-connect-server.sh`` would: pid file and log in
``spark.server_dir``), with regrow's JVM jars (Delta Lake: ``format("delta")`` works
through it), bound to
127.0.0.1 on ``spark.connect_port``, with the conf of every regrow session
(:func:`regrow.orchestration.spark.session_conf`). ``regrow spark start|stop|status`` and
``make spark-start`` / ``make spark-stop`` drive it; a cluster keeps ``spark-submit``
(``airflow.spark_via: submit``) or its own Connect server (``spark.remote``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from regrow.orchestration.spark import (
    SparkServerError,
    answers,
    session_conf,
    speaks_spark_connect,
)
from regrow.settings import Settings

HOST = "127.0.0.1"
# The ident in the pid file's and log's names (spark-<ident>-<class>-1.pid), per port.
_IDENT = "regrow-{port}"
_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


@dataclass(frozen=True)
class Server:
    url: str
    run_dir: Path
    port: int

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"spark-{_IDENT.format(port=self.port)}-{_CLASS}-1.pid"

    @property
    def log_file(self) -> Path:
        return (
            self.run_dir
            / f"spark-{_IDENT.format(port=self.port)}-{_CLASS}-1-{os.uname().nodename}.out"
        )

    def pid(self) -> int | None:
        """The server's process id, if its pid file names a live process."""
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def running(self) -> bool:
        """Whether something listens at the server's address (see :meth:`serves`)."""
        return answers(self.url)

    def serves(self, timeout: float = 10.0) -> bool:
        """Whether what listens at the address is a Spark Connect server: this project's
        (the process of its pid file listens there), or one started otherwise that answers
        a Spark Connect request (by hand, or by another checkout with the same port). A
        session opened on another program's port would wait on gRPC retries for minutes."""
        pid = self.pid()
        if pid is not None and _listens(pid, self.port):
            return True
        return speaks_spark_connect(self.url, timeout) is True

    def not_served(self) -> str:
        """Why a program that listens at the address is not used as the server."""
        return (
            f"another program listens at {HOST}:{self.port} and it is no Spark Connect "
            f"server: set spark.connect_port in params.yaml to a free port, or stop it"
        )

    def log_excerpt(self, lines: int = 15) -> str:
        """The end of the log, or from its last ERROR line on when there is one (a server
        that exited logs its shutdown after the reason)."""
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no log at {self.log_file})"
        errors = [i for i, line in enumerate(text) if " ERROR " in line]
        start = errors[-1] if errors else len(text) - lines
        return "\n".join(text[max(start, 0) :][:lines])


def free_port(tries: int = 50) -> int:
    """A free port of 127.0.0.1 below the kernel's ephemeral range, for a server started
    beside others (the tests' and benchmarks' servers). A port from that range (what
    binding port 0 gives) is handed to any process's next outgoing connection or port-0
    bind, so it may be taken between this check and the server's bind: a Connect server
    lost its port so once (2026-12-07). Ports below it only go to explicit binds."""
    import random
    import socket

    ranges = Path("/proc/sys/net/ipv4/ip_local_port_range")  # Linux's; its default below
    low = int(ranges.read_text().split()[0]) if ranges.is_file() else 32768
    for port in random.sample(range(max(1024, low - 12000), low), tries):
        with socket.socket() as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue  # in use
            return port
    raise SparkServerError(f"no free port of {HOST} found below {low} in {tries} tries")


def local_server(settings: Settings, port: int | None = None) -> Server:
    """The local server the ``spark`` section describes (its port unless ``port``)."""
    port = port or settings.spark.connect_port
    run_dir = Path(settings.resolve(settings.spark.server_dir))
    return Server(f"sc://{HOST}:{port}", run_dir, port)


def _daemon(action: str) -> list[str]:
    """What Spark's ``sbin/start-connect-server.sh`` / ``stop-connect-server.sh`` run:
    pyspark 4.2's wheel ships ``spark-daemon.sh`` and the Connect server's jar but not
    those two scripts (4.3's has them)."""
    return [str(_spark_home() / "sbin" / "spark-daemon.sh"), action, _CLASS, "1"]


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _daemon_env(server: Server) -> dict[str, str]:
    python = sys.executable
    return {
        **os.environ,
        "SPARK_HOME": str(_spark_home()),
        "SPARK_PID_DIR": str(server.run_dir),
        "SPARK_LOG_DIR": str(server.run_dir),
        "SPARK_IDENT_STRING": _IDENT.format(port=server.port),
        "SPARK_LOCAL_IP": HOST,
        "PYSPARK_PYTHON": python,
        "PYSPARK_DRIVER_PYTHON": python,
    }


def _local_cores(master: str) -> int | None:
    """The cores a ``local``, ``local[N]`` or ``local[*]`` master runs on; None otherwise."""
    if master == "local":
        return 1
    if master.startswith("local[") and master.endswith("]"):
        count = master[len("local[") : -1].split(",")[0]
        if count == "*":
            return os.cpu_count() or 1
        return int(count) if count.isdigit() else None
    return None


def start(settings: Settings, port: int | None = None, timeout: float = 120.0) -> Server:
    """Start the local server (unless a Spark Connect server answers at its address
    already) and wait until it accepts sessions.

    Raises:
        SparkServerError: another program listens at the address; or the server exited or
            did not answer within ``timeout`` seconds (the message has its log's end).
    """
    server = local_server(settings, port)
    if server.running():
        if server.serves():
            return server
        raise SparkServerError(server.not_served())
    server.run_dir.mkdir(parents=True, exist_ok=True)
    spark = settings.spark
    conf = {
        **session_conf(spark),
        "spark.connect.grpc.binding.address": HOST,
        "spark.connect.grpc.binding.port": str(server.port),
        "spark.driver.host": HOST,
        "spark.driver.bindAddress": HOST,
        "spark.pyspark.python": sys.executable,
    }
    cores = _local_cores(spark.master)
    if cores:  # what regrow.storage.default_parallelism reads on a Connect session
        conf["spark.default.parallelism"] = str(cores)
    command = [
        *_daemon("submit"),
        "--master", spark.master,
        "--driver-memory", spark.driver_memory,
        "--name", f"{spark.app_name}-connect",
        *(arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")),
    ]  # fmt: skip
    done = subprocess.run(
        command, env=_daemon_env(server), stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SparkServerError(
            f"the Spark Connect server for {server.url} did not start: "
            f"{(done.stdout + done.stderr).strip()}"
        )
    started = time.monotonic()
    while True:
        waited = time.monotonic() - started
        pid = server.pid()
        if pid is None and waited > 5:  # spark-daemon writes the pid file at once
            taken = (
                f" Another program listens at {HOST}:{server.port}: set spark.connect_port "
                "in params.yaml to a free port."
                if server.running()
                else ""
            )
            raise SparkServerError(
                f"the Spark Connect server for {server.url} exited.{taken} Its log "
                f"({server.log_file}) says:\n{server.log_excerpt()}"
            )
        # Up when the port answers and it is this server that listens there: a port found
        # free can be taken by another program before the server binds it (the server then
        # exits), and a session opened on that program's port would wait on gRPC retries
        # for minutes (a test hung so for 240 s, 2026-12-07).
        if pid is not None and server.running() and _listens(pid, server.port) is not False:
            return server
        if waited > timeout:
            raise SparkServerError(
                f"the Spark Connect server for {server.url} did not answer in {timeout:.0f} s; "
                f"its log ({server.log_file}) says:\n{server.log_excerpt()}"
            )
        time.sleep(0.5)


def _listens(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` listens on TCP ``port``; None when the system will not say
    (psutil's AccessDenied), and then the port answering is taken as the server's."""
    import psutil

    try:
        sockets = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return None
    return any(s.status == psutil.CONN_LISTEN and s.laddr.port == port for s in sockets)


def stop(settings: Settings, port: int | None = None, timeout: float = 60.0) -> bool:
    """Stop the local server; False if none was running (by its pid file)."""
    server = local_server(settings, port)
    pid = server.pid()
    if pid is None:
        return False
    subprocess.run(_daemon("stop"), env=_daemon_env(server), capture_output=True, text=True)
    deadline = time.monotonic() + timeout
    while server.pid() is not None or server.running():
        if time.monotonic() > deadline:
            raise SparkServerError(
                f"the Spark Connect server for {server.url} (pid {pid}) did not stop in "
                f"{timeout:.0f} s"
            )
        time.sleep(0.3)
    return True


@contextlib.contextmanager
def running(settings: Settings, port: int | None = None) -> Iterator[Server]:
    """The local server for the duration of a ``with`` block: started if it was not
    running, and then stopped again at the end (one already running is left running).
    This process's Spark Connect session is closed first."""
    server = local_server(settings, port)
    was_running = server.running()
    server = start(settings, port)
    try:
        yield server
    finally:
        if not was_running:
            close_sessions()
            stop(settings, port)


def close_sessions() -> None:
    """Close this process's Spark Connect session, if it has one. pyspark's exit hook
    calls the server of a session left open (``SparkConnectClient._on_exit``) and, the
    server gone, retries for minutes before the process may exit."""
    if "pyspark.sql.connect.session" not in sys.modules:
        return
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    for session in {ConnectSession.getActiveSession(), ConnectSession._get_default_session()}:
        if session is not None:
            session.stop()
