"""The local Spark Connect server (one warm JVM for every Spark job) and what happens when
it is not there: each way in fails at once, naming the address, and writes nothing."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from typer.testing import CliRunner

from regrow.catalog import EVENTS
from regrow.cli import app
from regrow.data import simulate
from regrow.orchestration import connect
from regrow.orchestration.spark import (
    JVM_OPTIONS,
    SparkServerError,
    get_spark,
    is_other_program,
    speaks_spark_connect,
)
from regrow.settings import SparkSettings, load_settings
from regrow.storage.session import is_connect
from tests.conftest import REPO, _free_port, lakehouse_of, write_params

DAY = "2026-01-01"


@pytest.fixture
def landed(tmp_path):
    settings = load_settings(write_params(tmp_path, simulator={"days": 1, "events_per_day": 50}))
    simulate.write_landing(settings.dataset, settings.simulator, settings.landing,
                           settings.resolve(settings.landing.path), 1)  # fmt: skip
    return settings


def test_the_cli_starts_reports_and_stops_its_server(tmp_path):
    port = _free_port()
    params = str(write_params(tmp_path, spark={"connect_port": port}))
    cli = CliRunner()
    started = cli.invoke(app, ["spark", "start", "--params", params])
    try:
        assert started.exit_code == 0, started.output
        assert "started (pid " in started.output and f"sc://127.0.0.1:{port}" in started.output
        again = cli.invoke(app, ["spark", "start", "--params", params])
        assert again.exit_code == 0 and "already running" in again.output
        status = cli.invoke(app, ["spark", "status", "--params", params])
        assert status.exit_code == 0 and f"running at sc://127.0.0.1:{port}" in status.output
        # A client in its own process (this one holds the tests' classic session).
        client = subprocess.run(
            [sys.executable, "-c", "from pyspark.sql import SparkSession; "
             f"s = SparkSession.builder.remote('sc://127.0.0.1:{port}').getOrCreate(); "
             "print(s.range(7).count()); print(s.conf.get('spark.driver.extraJavaOptions'))"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        count, options = client.stdout.split("\n")[:2]
        assert count == "7", client.stderr[-2000:]
        assert set(JVM_OPTIONS.split()) <= set(options.split()), options  # Spark adds its own
    finally:
        stopped = cli.invoke(app, ["spark", "stop", "--params", params])
    assert stopped.exit_code == 0 and "stopped" in stopped.output
    status = cli.invoke(app, ["spark", "status", "--params", params])
    assert status.exit_code == 1
    assert f"no Spark Connect server answers at sc://127.0.0.1:{port}" in status.output
    assert (tmp_path / ".spark-connect").is_dir()  # its pid file and log live there


def test_the_sessions_jvm_runs_with_regrows_jit_settings(spark):
    """Spark's generated code for ingest's row rules is a method HotSpot would leave
    interpreted, and C2 compiles small days' planning code for more CPU than it saves
    (docs/spark.md): the JVM regrow starts has each of its settings. Read back from the
    JVM itself: Spark's launcher adds -XX:+IgnoreUnrecognizedVMOptions, so a misspelt
    option would be on the command line and not in effect."""
    wanted = {}
    for option in JVM_OPTIONS.split():
        if option.startswith("-XX:"):
            name, _, value = option.removeprefix("-XX:").partition("=")
            if not value:  # -XX:+Name / -XX:-Name
                name, value = name[1:], str(name[0] == "+").lower()
            wanted[name] = value
    assert {"DontCompileHugeMethods", "Tier4InvocationThreshold"} <= set(wanted)
    if is_connect(spark):  # the suite on a Connect server: its conf, not its JVM
        options = spark.conf.get("spark.driver.extraJavaOptions")
        assert set(JVM_OPTIONS.split()) <= set(options.split()), options
        return
    jvm = spark.sparkContext._jvm
    hotspot = jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
        jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean")
    )
    in_effect = {name: hotspot.getVMOption(name).getValue() for name in wanted}
    assert in_effect == wanted


def test_no_server_fails_at_once_naming_the_address():
    port = _free_port()
    with pytest.raises(
        SparkServerError, match=f"no Spark Connect server answers at 127.0.0.1:{port}"
    ):
        get_spark(SparkSettings(remote=f"sc://127.0.0.1:{port}"))


def test_a_job_pointed_at_no_server_exits_1_naming_it_and_writes_nothing(landed):
    port = _free_port()
    done = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "ingest.py"), "--date", DAY, "--params",
         landed.resolve("params.yaml"), "--spark-remote", f"sc://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"no Spark Connect server answers at 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not lakehouse_of(landed).exists(EVENTS)


def test_the_cli_with_a_dead_spark_remote_says_so_in_one_line(landed, monkeypatch):
    port = _free_port()
    monkeypatch.setenv("SPARK_REMOTE", f"sc://127.0.0.1:{port}")
    result = CliRunner().invoke(
        app, ["ingest", "--date", DAY, "--params", landed.resolve("params.yaml")]
    )
    assert result.exit_code == 1, result.output
    assert f"no Spark Connect server answers at 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output
    assert not lakehouse_of(landed).exists(EVENTS)


def test_the_cli_with_a_spark_remote_on_another_program_says_so_in_one_line(
    landed, monkeypatch, web_server
):
    """SPARK_REMOTE names a port where a web server listens: one line naming the address,
    at once, nothing written (the session would have waited on gRPC retries)."""
    url = f"sc://127.0.0.1:{web_server}"
    monkeypatch.setenv("SPARK_REMOTE", url)
    result = CliRunner().invoke(
        app, ["ingest", "--date", DAY, "--params", landed.resolve("params.yaml")]
    )
    assert result.exit_code == 1, result.output
    assert (
        f"what listens at 127.0.0.1:{web_server} ({url}) is no Spark Connect server: point "
        "spark.remote or $SPARK_REMOTE at the server's port"
    ) in result.output
    assert "Traceback" not in result.output
    assert not lakehouse_of(landed).exists(EVENTS)


def test_a_spark_remote_is_asked_over_the_channel_its_parameters_make(web_server, spark_connect):
    """The probe connects as a session on the URL does (pyspark's channel builder): the
    URL's parameters reach a real server, which is not refused for them; another program
    is refused whatever plaintext parameters the URL has; and over TLS, where a channel
    that does not connect may be a real server whose certificate this client does not
    trust, it is left to the session."""
    served = spark_connect.port
    assert speaks_spark_connect(f"sc://127.0.0.1:{served}/;user_id=someone") is True
    # A token to localhost travels in the clear (gRPC's local channel credentials).
    assert speaks_spark_connect(f"sc://localhost:{served}/;token=t") is True
    assert is_other_program(f"sc://127.0.0.1:{web_server}")
    assert is_other_program(f"sc://127.0.0.1:{web_server}/;user_id=someone")
    assert is_other_program(f"sc://localhost:{web_server}/;token=t")
    assert speaks_spark_connect(f"sc://127.0.0.1:{web_server}/;use_ssl=true;token=t") is None
    assert not is_other_program(f"sc://127.0.0.1:{web_server}/;use_ssl=true;token=t")
    with pytest.raises(SparkServerError, match=r"is not a Spark Connect URL: .*'user_id'"):
        is_other_program(f"sc://127.0.0.1:{web_server}/;user_id")


def test_a_spark_remote_that_is_no_connect_url_is_a_config_error(tmp_path):
    from regrow.settings import ConfigError

    with pytest.raises(ConfigError, match="(?i)spark.remote must be a Spark Connect URL"):
        load_settings(write_params(tmp_path, spark={"remote": "local[*]"}))


def test_a_port_taken_before_the_server_binds_it_is_named_not_used(tmp_path):
    """Another program starts listening on the port after it was found free and before the
    server binds it: the server exits, and start names the port and the fix. Taking the
    port's answer as the server's, a session on it hung on gRPC retries (240 s in a suite
    run, 2026-12-07)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", _free_port()))  # held, not yet listening: start launches
        port = other.getsockname()[1]
        settings = load_settings(write_params(tmp_path, spark={"connect_port": port}))
        pid_file = connect.local_server(settings).pid_file

        def listen_once_launched():
            deadline = time.monotonic() + 60
            while not pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            other.listen()  # seconds before the server's JVM binds

        listener = threading.Thread(target=listen_once_launched)
        listener.start()
        try:
            with pytest.raises(SparkServerError) as error:
                connect.start(settings)
        finally:
            listener.join()
            connect.stop(settings)  # a server that did start (this test failing) is stopped
    assert pid_file.exists()  # the server was launched, and exited
    assert str(error.value).startswith(
        f"the Spark Connect server for sc://127.0.0.1:{port} exited. Another program "
        f"listens at 127.0.0.1:{port}: set spark.connect_port in params.yaml to a free port."
    ), str(error.value)
    assert "BindException" in str(error.value)  # its log, from its error on, says why


@pytest.fixture
def other_grpc_server() -> Iterator[int]:
    """The port of a real gRPC server of no service: every method unknown to it."""
    server = grpc.server(futures.ThreadPoolExecutor(1))
    port = server.add_insecure_port(f"127.0.0.1:{_free_port()}")
    server.start()
    try:
        yield port
    finally:
        server.stop(None)


@pytest.mark.parametrize("other", ["web_server", "other_grpc_server"])
def test_a_program_already_listening_on_the_port_is_named_not_taken_for_the_server(
    tmp_path, other, request
):
    """Another program (a web server, a gRPC server of another service) listens at the port
    before `start`: start launches nothing and names the port and the fix, and status says
    the same (a session on that port would have waited on gRPC retries for minutes)."""
    port = request.getfixturevalue(other)
    params = write_params(tmp_path, spark={"connect_port": port})
    settings = load_settings(params)
    expected = (
        f"another program listens at 127.0.0.1:{port} and it is no Spark Connect server: "
        "set spark.connect_port in params.yaml to a free port, or stop it"
    )
    with pytest.raises(SparkServerError, match="^" + re.escape(expected)):
        connect.start(settings)
    assert not connect.local_server(settings).pid_file.exists()  # nothing launched
    status = CliRunner().invoke(app, ["spark", "status", "--params", str(params)])
    start = CliRunner().invoke(app, ["spark", "start", "--params", str(params)])
    assert status.exit_code == 1 and expected in status.output, status.output
    assert start.exit_code == 1 and expected in start.output, start.output
    assert "Traceback" not in start.output


def test_a_server_another_checkout_started_on_the_port_is_used(spark_connect, tmp_path):
    """The session's server answers at the port, but this project's pid file names no
    process (another checkout started it): start uses it and launches no second one."""
    settings = load_settings(write_params(tmp_path, spark={"connect_port": spark_connect.port}))
    server = connect.start(settings)
    assert server.url == spark_connect.url
    assert server.pid() is None and not server.pid_file.exists()
    assert server.serves()


EXITS = """
import sys
from regrow.orchestration import connect
from regrow.orchestration.spark import get_spark
from regrow.settings import load_settings

settings = load_settings(sys.argv[1])
with connect.running(settings) as server:
    spark = get_spark(settings.spark.model_copy(update={"remote": server.url}))
    print(spark.range(3).count())
print("done", flush=True)
"""


def test_a_process_that_ran_the_server_for_a_block_exits_when_done(tmp_path):
    """The server stops at the end of the block; the process's session is closed first, or
    pyspark's exit hook would call the stopped server and retry for minutes (the demo hung
    so after its last line)."""
    params = write_params(tmp_path, spark={"connect_port": _free_port()})
    done = subprocess.run([sys.executable, "-c", EXITS, str(params)], capture_output=True,
                          text=True, timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["3", "done"]
