"""``lakehouse.engine: auto``: delta-spark when `make setup` has fetched the jars (in a Spark
in the process and on regrow's Spark Connect server), delta-rs without them; the choice is
logged once. Each case runs in a subprocess: a process holds one Spark, and the jars are
read when it starts."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from regrow.orchestration import jars

CHOOSE = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="LOG %(message)s", stream=sys.stdout)
from regrow.orchestration.spark import get_spark
from regrow.settings import LakehouseSettings, SparkSettings
from regrow.storage.lakehouse import Lakehouse, LakehouseError

spark = get_spark(SparkSettings(master="local[1]", conf={"spark.ui.enabled": "false"}))
root = sys.argv[1]
print("ENGINES", [Lakehouse(LakehouseSettings(), root).engine(spark) for _ in range(3)])
try:
    Lakehouse(LakehouseSettings(engine="delta-spark"), root).engine(spark)
except LakehouseError as err:
    print("REFUSED", err)
"""

ON_CONNECT = """
import datetime as dt, sys
from regrow.orchestration.spark import get_spark
from regrow.settings import LakehouseSettings, SparkSettings
from regrow.storage.lakehouse import Lakehouse

spark = get_spark(SparkSettings())  # $SPARK_REMOTE: the Connect server
lakehouse = Lakehouse(LakehouseSettings(), sys.argv[1])
day = dt.date(2026, 1, 1)
schema = "event_id string, amount double, event_date date"
lakehouse.write(spark.createDataFrame([("a", 1.0, day), ("b", 2.0, day)], schema),
                "bronze.events", partition_by=["event_date"])
merged = lakehouse.write(spark.createDataFrame([("b", 20.0, day), ("c", 3.0, day)], schema),
                         "bronze.events", mode="merge", keys=["event_id"])
rows = sorted((r.event_id, r.amount) for r in lakehouse.read(spark, "bronze.events").collect())
print("RESULT", lakehouse.engine(spark), merged.engine, merged.operation, rows)

# A derive (mapInArrow on the server) with a schema made on the client, read by delta-rs.
def same(batches):
    yield from batches

schema = lakehouse.spark_schema("bronze.events")
lakehouse.derive(spark, "bronze.events", "silver.copy", same, schema, schema.names,
                 partition_by=["event_date"])
copied = Lakehouse(LakehouseSettings(engine="delta-rs"), sys.argv[1]).to_arrow("silver.copy")
print("COPIED", sorted(copied["event_id"].to_pylist()))
"""


def run(script: str, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    return subprocess.run(
        [sys.executable, str(path), str(tmp_path / "lake")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def line(done: subprocess.CompletedProcess, prefix: str) -> str:
    found = [x for x in done.stdout.splitlines() if x.startswith(prefix)]
    assert found, done.stdout[-2000:] + done.stderr[-3000:]
    return found[0]


def test_auto_picks_delta_spark_when_the_jars_are_there(tmp_path):
    assert jars.present(jars.DELTA), "run `make setup`: the Delta jars are not fetched"

    done = run(CHOOSE, tmp_path, {"REGROW_JARS_DIR": str(jars.jars_dir())})

    assert line(done, "ENGINES") == "ENGINES ['delta-spark', 'delta-spark', 'delta-spark']"
    assert done.stdout.count("LOG lakehouse engine: delta-spark (auto)") == 1
    assert "REFUSED" not in done.stdout


def test_auto_picks_delta_rs_without_the_jars_and_delta_spark_is_refused(tmp_path):
    empty = tmp_path / "no-jars"
    empty.mkdir()

    done = run(CHOOSE, tmp_path, {"REGROW_JARS_DIR": str(empty)})

    assert line(done, "ENGINES") == "ENGINES ['delta-rs', 'delta-rs', 'delta-rs']"
    assert done.stdout.count("LOG lakehouse engine: delta-rs (auto)") == 1
    refused = line(done, "REFUSED")
    assert "no Delta Lake connector" in refused and "make setup" in refused


def test_the_connect_server_serves_delta_natively(tmp_path, spark_connect):
    """The server regrow starts has the Delta jars and extension: a Connect client's
    lakehouse picks delta-spark, and writes, merges (SQL MERGE: Delta Connect's own client
    plugin is not on Maven Central for Spark 4.2) and reads through it."""
    done = run(ON_CONNECT, tmp_path, {"SPARK_REMOTE": spark_connect.url})

    assert done.returncode == 0, done.stderr[-3000:]
    assert line(done, "RESULT") == (
        "RESULT delta-spark delta-spark MERGE [('a', 1.0), ('b', 20.0), ('c', 3.0)]"
    )
    assert line(done, "COPIED") == "COPIED ['a', 'b', 'c']"
    log = (tmp_path / "lake" / "bronze" / "events" / "_delta_log").glob("*.json")
    assert any("Delta-Lake/" in p.read_text() for p in log)  # written by Delta Spark
