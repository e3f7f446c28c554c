"""``one_pass``: what a range of small days costs a Spark stage that runs day by day,
against one pass over the whole range.

The same work both ways: read the days' landed event CSVs as text (a header, no typing)
with each row's day from its folder, and write them to a ``bronze`` table partitioned by
that day through the lakehouse. Day by day, each day is one read and one overwrite of its
partition, as every regrow stage runs a day today; in one pass, one read of every day and
one overwrite that writes all their partitions. Both tables must hold the same rows in the
same partitions, or the benchmark fails.

This is the floor under a stage's day, not regrow's ingest: no contract types, row rules,
quarantine or duplicate lookup, which each add their own jobs a day. It says how much of a
small day is the day itself (docs/spark.md, "What is left").
``REGROW_BENCH_ONE_PASS_DAYS`` (20) days of ``REGROW_BENCH_ONE_PASS_EVENTS`` (2,000)
simulated events, expressions interpreted as regrow's day loops run small days.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time
from pathlib import Path

from bench import BenchContext, Measurement, benchmark, past_start
from bench.validation_cost import write_params

WARMUP = 1  # an untimed run of both ways first: the JVM's first writes are slower


@benchmark(
    "one_pass",
    "REGROW_BENCH_ONE_PASS_DAYS (20) small days read and written day by day, against one "
    "pass over the range: the per-day floor of a Spark stage",
)
def run(ctx: BenchContext) -> Measurement:
    from pyspark.sql import functions as F

    from regrow.data import simulate
    from regrow.orchestration.context import stage_context
    from regrow.settings import load_settings
    from regrow.storage.session import interpreted

    days = int(os.environ.get("REGROW_BENCH_ONE_PASS_DAYS", 20))
    events = int(os.environ.get("REGROW_BENCH_ONE_PASS_EVENTS", 2000))
    root = ctx.work_dir / "one_pass"
    root.mkdir(parents=True, exist_ok=True)
    settings = load_settings(write_params(root))
    simulator = settings.simulator.model_copy(update={
        "days": days, "events_per_day": events, "scenario": "stable",
        "start_date": past_start(settings.simulator.start_date, days),
    })  # fmt: skip
    landing = settings.resolve(settings.landing.path)
    simulate.write_landing(settings.dataset, simulator, settings.landing, landing, days)
    events_dir = Path(landing) / "events"
    dates = [simulator.start_date + dt.timedelta(days=i) for i in range(days)]
    spark = ctx.spark
    lakehouse = stage_context(settings, "bench-one-pass", spark=spark).lakehouse

    def read(files: list[Path]):
        # The files named, not a glob: Spark warns with a stack trace for each glob path.
        day = F.regexp_extract(F.input_file_name(), r"/events/(\d{4}-\d{2}-\d{2})/", 1)
        reader = spark.read.option("header", True)
        return reader.csv([str(f) for f in sorted(files)]).withColumn("day", F.to_date(day))

    def day_by_day(table: str) -> None:
        for date in dates:
            lakehouse.write(read(list((events_dir / str(date)).iterdir())), table, "overwrite",
                            partition_by=["day"], partition={"day": date})  # fmt: skip

    def one_pass(table: str) -> None:
        lakehouse.write(
            read(list(events_dir.glob("*/*"))), table, "overwrite", partition_by=["day"]
        )

    ways = {"day_by_day": day_by_day, "one_pass": one_pass}
    timings: dict[str, list[float]] = {name: [] for name in ways}
    with interpreted(spark, settings.spark):
        for i in range(WARMUP + ctx.repetitions):
            for name, way in ways.items():
                table = f"bronze.{name}_{i}"
                started = time.perf_counter()
                way(table)
                if i >= WARMUP:
                    timings[name].append(time.perf_counter() - started)
            _check_equal(lakehouse, [f"bronze.{name}_{i}" for name in ways], days * events)

    by_day, once = (statistics.median(timings[name]) for name in ways)
    return Measurement(
        parameters={"days": days, "events_per_day": events, "interpreted": True},
        timings=timings,
        derived={
            "day_by_day_s_per_day": round(by_day / days, 3),
            "one_pass_s_per_day": round(once / days, 3),
            "day_by_day_over_one_pass": round(by_day / once, 1),
        },
        notes=[
            "a read and a partition overwrite only: regrow's ingest adds typing, row rules, "
            "quarantine and the duplicate lookup, each with jobs of their own a day"
        ],
    )


def _check_equal(lakehouse, tables: list[str], rows: int) -> None:
    """The tables hold the same rows per day, ``rows`` in all; else the benchmark fails."""
    counts = [
        lakehouse.sql(f"SELECT day, count(*) AS n FROM {t} GROUP BY day ORDER BY day").to_pylist()
        for t in tables
    ]
    if any(c != counts[0] for c in counts) or sum(r["n"] for r in counts[0]) != rows:
        raise AssertionError(f"{tables} differ or miss rows (expected {rows}): {counts}")
