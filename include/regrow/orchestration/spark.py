"""The one way regrow builds a SparkSession (jobs, CLI, DVC stages and tests share it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from regrow.orchestration import jars
from regrow.settings import ConfigError, SparkSettings
from regrow.storage.delta_log import TABLE_CONFIGURATION
from regrow.storage.delta_spark import DELTA_EXTENSION

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


def jvm_jars(spark_settings: SparkSettings) -> dict[str, list[str]]:
    """regrow's pinned jars on hand (:mod:`.jars`): ``{"delta": [...], "s3a": [...]}``,
    the roles whose jars are all there. A Delta connector the user brings through
    ``spark.conf`` (``spark.jars.packages``, a cluster's ``spark.jars``) counts too.

    Raises:
        SparkJarsError: the jars are there but pyspark is of another Spark line.
    """
    try:
        found = {role: [str(p) for p in paths] for role, paths in jars.spark_jars().items()}
    except jars.JarsError as e:
        raise SparkJarsError(str(e)) from e
    extra = " ".join(spark_settings.conf.get(k, "") for k in ("spark.jars", "spark.jars.packages"))
    if jars.DELTA not in found and "delta-spark" in extra:
        found[jars.DELTA] = []
    return found


class SparkJarsError(ConfigError):
    """regrow's jars do not fit the installed Spark (one line naming the artifact)."""


def s3a_conf() -> dict[str, str]:
    """With hadoop-aws on the classpath, ``s3://`` paths read by Spark itself go through
    S3A too, with the endpoint from ``AWS_ENDPOINT_URL`` if set. The lakehouse sets its
    own storage options on the session as well (:meth:`regrow.storage.Lakehouse.spark_uri`)."""
    conf = {
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        # Credentials from the environment (or a profile/instance role) unless the
        # lakehouse sets its own.
        "spark.hadoop.fs.s3a.aws.credentials.provider": (
            "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider"
        ),
    }
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
    return conf


class SparkServerError(ConfigError):
    """The Spark Connect server named by ``spark.remote`` / ``$SPARK_REMOTE`` is not there
    (a ConfigError: every command reports it as one line naming the address)."""


def remote_url(spark_settings: SparkSettings) -> str | None:
    """The Spark Connect server to run on: ``spark.remote``, else ``$SPARK_REMOTE``; None
    for a Spark in this process (and always under spark-submit, which made one)."""
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        return None
    return spark_settings.remote or os.environ.get("SPARK_REMOTE") or None


def remote_address(url: str) -> tuple[str, int]:
    """``(host, port)`` of a Spark Connect URL ``sc://host[:port][/;params]``."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if parsed.scheme != "sc" or not parsed.hostname:
        raise SparkServerError(f"{url!r} is not a Spark Connect URL (sc://host:port)")
    return parsed.hostname, parsed.port or 15002


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether something listens at the Spark Connect URL's address."""
    import socket

    try:
        with socket.create_connection(remote_address(url), timeout=timeout):
            return True
    except OSError:
        return False


# What a request to a program that is no Spark Connect server ends in: not HTTP/2
# (UNAVAILABLE) or a gRPC server without the method (UNIMPLEMENTED). Any other status is a
# Spark Connect server's answer (one that wants another token, say). Over TLS, UNAVAILABLE
# may also be a real server's handshake that failed (its certificate): then the session is
# left to say why.
_NOT_SPARK_CONNECT = ("UNAVAILABLE", "UNIMPLEMENTED")


def speaks_spark_connect(url: str, timeout: float = 10.0) -> bool | None:
    """Whether what listens at the Spark Connect ``url``'s address is a Spark Connect
    server, asked over the channel a session on ``url`` uses (pyspark's own channel
    builder: plaintext, TLS, the token and the other parameters as the URL says): True
    when it answers a request (its Spark version; the session the request opens is
    released at once), False when it is something else, None when that cannot be told:
    nothing answered within ``timeout`` seconds, or a TLS channel did not connect.

    Raises:
        SparkServerError: ``url`` is no Spark Connect URL pyspark would connect to (a
            parameter without its value, say).
    """
    import contextlib
    import uuid

    import grpc
    from pyspark.errors import PySparkValueError
    from pyspark.sql.connect.client import DefaultChannelBuilder
    from pyspark.sql.connect.proto import base_pb2, base_pb2_grpc

    try:
        builder = DefaultChannelBuilder(url)
    except PySparkValueError as err:  # e.g. a parameter without its "=value"
        raise SparkServerError(f"{url!r} is not a Spark Connect URL: {err}") from None
    session = str(uuid.uuid4())
    user = base_pb2.UserContext(user_id=builder.userId or "regrow")
    metadata = list(builder.metadata())
    # pyspark's rule: a token to localhost without use_ssl goes in the clear (gRPC's local
    # channel credentials), any other token or use_ssl=true over TLS.
    tls = builder.use_ssl or (builder.secure and builder.host != "localhost")
    with builder.toChannel() as channel:
        stub = base_pb2_grpc.SparkConnectServiceStub(channel)
        try:
            stub.AnalyzePlan(
                base_pb2.AnalyzePlanRequest(
                    session_id=session,
                    user_context=user,
                    spark_version=base_pb2.AnalyzePlanRequest.SparkVersion(),
                ),
                timeout=timeout,
                metadata=metadata,
            )
        except grpc.RpcError as err:
            code = err.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return None
            if code == grpc.StatusCode.UNAVAILABLE and tls:
                return None
            return code.name not in _NOT_SPARK_CONNECT
        with contextlib.suppress(grpc.RpcError):
            stub.ReleaseSession(
                base_pb2.ReleaseSessionRequest(session_id=session, user_context=user),
                timeout=timeout,
                metadata=metadata,
            )
    return True


def is_other_program(url: str) -> bool:
    """Whether what listens at ``url``'s address is certainly no Spark Connect server
    (:func:`speaks_spark_connect`); a silent server is left to the session."""
    return speaks_spark_connect(url) is False


def check_server(url: str) -> None:
    """Fail at once, naming the address, when no server listens at ``url``, or another
    program does (pyspark would retry for minutes and end in a gRPC error)."""
    host, port = remote_address(url)
    if not answers(url):
        raise SparkServerError(
            f"no Spark Connect server answers at {host}:{port} ({url}): start it with "
            "`regrow spark start`, or unset spark.remote and $SPARK_REMOTE to run Spark "
            "in this process"
        )
    if is_other_program(url):
        raise SparkServerError(
            f"what listens at {host}:{port} ({url}) is no Spark Connect server: point "
            "spark.remote or $SPARK_REMOTE at the server's port"
        )


# The JVM options of every regrow driver and executor. UTC: the JVM's own clock zone.
# (Spark's launcher adds -XX:+IgnoreUnrecognizedVMOptions, so a misspelt option would be
# dropped without a word: a test reads each one back from the JVM.)
# -XX:-DontCompileHugeMethods: HotSpot never JIT-compiles a method of more than 8,000
# bytes of bytecode and runs it interpreted; Spark's whole-stage code for ingest's row
# rules (about 40 conditions over ten columns) crosses that, and a 1M-row day's parse and
# split took 5.4 s instead of 1.3 s (2026-12-06, docs/spark.md). Spark's documentation
# of spark.sql.codegen.hugeMethodLimit names the JVM limit; lowering that conf to 8000
# falls back to per-operator code instead: 1.7 s.
# -XX:Tier4*Threshold at four times HotSpot's defaults: a method is compiled by C2, the
# optimising compiler, after 20,000 calls instead of 5,000 (loops: 160,000 iterations
# instead of 40,000). Small days run mostly Spark's planning code, each method a few
# thousand times: in three minutes of the own-data days' range stages on a Connect server,
# C2 compiled 8,500 methods in 71 of the server's 180 CPU-seconds (-XX:+CITime). With
# these thresholds the compilers took 54 s instead of 87-94 s, and the server 150-155
# CPU-s instead of 177-187, in the same wall time (2026-12-07, docs/spark.md). A large
# day's row loops pass them within their first batch. C1 alone (TieredStopAtLevel=1)
# compiled less but ran slower.
JVM_OPTIONS = (
    "-Duser.timezone=UTC -XX:-DontCompileHugeMethods -XX:Tier4InvocationThreshold=20000 "
    "-XX:Tier4MinInvocationThreshold=2400 -XX:Tier4CompileThreshold=60000 "
    "-XX:Tier4BackEdgeThreshold=160000"
)


def session_conf(spark_settings: SparkSettings) -> dict[str, str]:
    """The Spark conf of every regrow session, in this process or on regrow's Connect
    server: time is UTC everywhere, Arrow carries data to and from Python, and Python
    workers run this interpreter (it has pyarrow, deltalake, xgboost and regrow)."""
    conf = {
        "spark.sql.shuffle.partitions": str(spark_settings.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": JVM_OPTIONS,
        "spark.executor.extraJavaOptions": JVM_OPTIONS,
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        # pyspark 4 records the Python call site of every DataFrame and Column function for
        # its error messages: ~5 JVM round trips (and a failed ``import IPython``) per call.
        # A small day's ingest made 4,850 JVM calls without it, 12,140 with it (measured in
        # docs/spark.md). Errors still name the failing operation, not the Python line.
        "spark.python.sql.dataFrameDebugging.enabled": "false",
        # A partitioned file write (Delta's writer on the delta-spark engine) sorts its rows
        # by the partition columns first, though a regrow write holds one day. Concurrent
        # writers skip that sort while a task has at most this many partitions open (more:
        # Spark sorts the rest, as before). The sort of a 10M-row day spilled under the
        # 2 GiB heap and merging the spill files ran out of heap (bench daily_cycle,
        # docs/spark.md); a 3M-row write spilled 229 MB to disk and took 9.6 s, 7.3 s with
        # no sort (SPARK-26164 added these writers).
        "spark.sql.maxConcurrentOutputFileWriters": "4",
    }
    found = jvm_jars(spark_settings)
    if jars.DELTA in found:
        conf |= {
            "spark.sql.extensions": DELTA_EXTENSION,
            "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
            # Delta rebuilds a table's state from its log in this many partitions (default
            # 50, sized for clusters): with regrow's few shuffle partitions an overwrite and
            # read of a small table took 1.3 s instead of 3.4 s on 2 cores.
            "spark.databricks.delta.snapshotPartitions": str(spark_settings.shuffle_partitions),
            # The properties of a table it creates, as delta-rs's writes set them (a table
            # created here and written by delta-rs would otherwise checkpoint every 100).
            **{
                f"spark.databricks.delta.properties.defaults.{key.removeprefix('delta.')}": value
                for key, value in TABLE_CONFIGURATION.items()
            },
        }
    if jars.S3A in found:
        conf |= s3a_conf()
    merged = {**conf, **spark_settings.conf}  # the user's conf wins, except spark.jars:
    paths = [p for role in (jars.DELTA, jars.S3A) for p in found.get(role, [])]
    if paths:  # regrow's jars and the user's
        merged["spark.jars"] = ",".join([*paths, *filter(None, [merged.get("spark.jars")])])
    return merged


# What a Connect client may set on its own session (the rest is the server's).
_CLIENT_CONF = ("spark.sql.shuffle.partitions", "spark.sql.session.timeZone")


def get_spark(
    spark_settings: SparkSettings,
    extra_conf: dict[str, str] | None = None,
    jvm_log: Path | None = None,
) -> SparkSession:
    """Get or create the SparkSession described by the ``spark`` section: a Spark Connect
    session when :func:`remote_url` names a server, else a Spark in this process.

    Python workers must run this interpreter (it has pyarrow and regrow), so
    ``PYSPARK_PYTHON`` defaults to ``sys.executable``. Time is UTC everywhere. With
    ``jvm_log``, a JVM started here writes its output (log4j's start-up warnings, "Setting
    default log level", the JVM's own) to that file, not to this process's stderr: the
    CLI prints only its own lines.

    Raises:
        SparkServerError: the Spark Connect server does not answer (its address named).
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    url = remote_url(spark_settings)
    if url:
        check_server(url)
        builder = SparkSession.builder.remote(url)
        for key in _CLIENT_CONF:
            builder = builder.config(key, session_conf(spark_settings)[key])
        return builder.getOrCreate()
    # pyspark itself would make a Connect session when $SPARK_REMOTE is set.
    os.environ.pop("SPARK_REMOTE", None)
    builder = SparkSession.builder
    # Under spark-submit the master, driver memory and application name come from its
    # command line (the Airflow connection, the task's name); a value set here would
    # silently override them.
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    if not submitted:
        builder = builder.appName(spark_settings.app_name).master(spark_settings.master)
        builder = builder.config("spark.driver.memory", spark_settings.driver_memory)
    if not submitted and spark_settings.master.startswith("local"):
        # A local session talks to itself only: bind to loopback, not the first interface.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.config("spark.driver.host", "127.0.0.1").config(
            "spark.driver.bindAddress", "127.0.0.1"
        )
    for key, value in {**session_conf(spark_settings), **(extra_conf or {})}.items():
        builder = builder.config(key, value)
    if jvm_log is not None and not submitted:
        _launch_jvm(builder, jvm_log)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _launch_jvm(builder: SparkSession.Builder, log: Path) -> None:
    """Start the driver JVM (unless this process has one) with its stdout and stderr
    appended to ``log``: ``getOrCreate`` then uses it. The JVM gets the builder's conf on
    its command line, as ``getOrCreate`` would have passed it."""
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    with SparkContext._lock:
        if SparkContext._gateway is not None:
            return
        conf = SparkConf(loadDefaults=False)
        conf.setAll(list(builder._options.items()))
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            gateway = launch_gateway(conf, popen_kwargs={"stdout": out, "stderr": out})
        SparkContext._gateway = gateway
        SparkContext._jvm = gateway.jvm
