"""``duplicate_lookup``: how ingest's duplicate check grows with ``bronze.events``' history.

With ``dataset.duplicate_lookback_days: null`` (the default) each day's event ids are
looked up in every earlier ``bronze.events`` partition (one file a day):
:func:`regrow.data.row_rules.with_earlier_events`. This writes 2,000 ids a day for
``REGROW_BENCH_LOOKUP_HISTORY`` days (default ``5,50,150,300``: the table grows to each in
turn) and times the lookup of one new 2,000-id day against each, with Spark's expressions
interpreted as a small day's ingest runs them: as ingest runs it (the day's ids semi-joined
ahead of the aggregate past ``SEMI_JOIN_HISTORY_RATIO``), and with the whole history
aggregated (``_whole_history``), which is how that ratio was chosen. The range backfill's
year is projected from its first 25 days, which this cost does not reach (docs/spark.md).
"""

from __future__ import annotations

import datetime as dt
import os
import time

from bench import BenchContext, Measurement, benchmark
from bench.validation_cost import write_params

IDS_PER_DAY = 2000
WARMUP = 2  # untimed runs of each variant at each history
START = dt.date(2025, 1, 1)


@benchmark(
    "duplicate_lookup",
    "ingest's lookup of one day's 2,000 event ids in every earlier bronze.events day, "
    "at REGROW_BENCH_LOOKUP_HISTORY (5,50,150,300) earlier days",
)
def run(ctx: BenchContext) -> Measurement:
    from pyspark.sql import functions as F

    from regrow.catalog import EVENT_DATE, EVENTS, SOURCE_FILE
    from regrow.data.row_rules import with_earlier_events
    from regrow.orchestration.context import stage_context
    from regrow.settings import load_settings
    from regrow.storage.session import interpreted

    history = sorted(
        int(n) for n in os.environ.get("REGROW_BENCH_LOOKUP_HISTORY", "5,50,150,300").split(",")
    )
    root = ctx.work_dir / "duplicate_lookup"
    root.mkdir(parents=True, exist_ok=True)
    settings = load_settings(write_params(root))
    dataset, spark = settings.dataset, ctx.spark
    lakehouse = stage_context(settings, "bench-lookup", spark=spark).lakehouse

    def event_id(number):
        return F.concat(F.lit("t"), number.cast("string")).alias(dataset.event_id)

    timings: dict[str, list[float]] = {}
    written = 0
    with interpreted(spark, settings.spark):
        for days in history:
            if days > written:  # the next days of history, one file a day, one commit
                more = spark.range(written * IDS_PER_DAY, days * IDS_PER_DAY).select(
                    event_id(F.col("id")),
                    F.date_add(F.lit(START), (F.col("id") / IDS_PER_DAY).cast("int")).alias(
                        EVENT_DATE
                    ),  # fmt: skip
                    F.lit("bench.csv").alias(SOURCE_FILE),
                )
                lakehouse.write(
                    more.repartition(EVENT_DATE), EVENTS, "append", partition_by=[EVENT_DATE]
                )
                written = days
            day = START + dt.timedelta(days=days)
            # Every 7th id: most of the new day's ids were landed before.
            new = spark.range(IDS_PER_DAY).select(event_id(F.col("id") * 7))
            # As ingest runs it (the day's row count given: a semi join ahead of the
            # aggregate once the history holds SEMI_JOIN_HISTORY_RATIO times the day's
            # rows), and with the whole history aggregated, which the ratio was chosen by.
            # The two alternate, run after run: the JVM keeps warming over the first runs,
            # and whichever went first came out slower by up to 0.3 s on the same plan.
            variants = {
                f"lookup_{days}_days": IDS_PER_DAY,
                f"lookup_{days}_days_whole_history": None,
            }
            for name in variants:
                timings[name] = []
            for i in range(WARMUP + ctx.repetitions):
                for name, day_rows in variants.items():
                    started = time.perf_counter()
                    with_earlier_events(new, lakehouse, dataset, day, day_rows).localCheckpoint(
                        eager=True
                    )
                    if i >= WARMUP:
                        timings[name].append(time.perf_counter() - started)
    return Measurement(
        parameters={"history_days": history, "ids_per_day": IDS_PER_DAY, "interpreted": True},
        timings=timings,
        notes=[
            "a range's days after the 25th pay this growing cost on the ingest thread; "
            "dataset.duplicate_lookback_days bounds it"
        ],
    )
