"""``backfill_range``: a year of history in one range backfill (`regrow backfill`), at
2,000 simulated events a day: ingest -> validate bronze -> features -> labels -> validate
silver, day after day in one Spark application.

``REGROW_BENCH_BACKFILL_DAYS`` (default 365) and ``REGROW_BENCH_BACKFILL_EVENTS`` (default
2,000) size it; with fewer days the year is projected from the mean day after the first block
of days, and the result says so. ``REGROW_BENCH_INTERPRETED_BELOW_MIB`` overrides params.yaml's
``spark.interpreted_below_mib`` (0: the days compiled, to compare with interpreted ones).
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time

from bench import BenchContext, Measurement, PeakRss, Target, benchmark, past_start
from bench.scoring import jvm_pid
from bench.validation_cost import write_params

YEAR = 365
TARGET_MINUTES = 15.0
SMALL_DAY_VALIDATION_S = 2.0


@benchmark(
    "backfill_range",
    "a range backfill of REGROW_BENCH_BACKFILL_DAYS days (365) at 2,000 events a day in one "
    "Spark application: minutes for the year, seconds per day and per stage",
)
def run(ctx: BenchContext) -> Measurement:
    from regrow.data import simulate
    from regrow.data.backfill import SILVER_BLOCK_DAYS, backfill
    from regrow.orchestration.context import stage_context
    from regrow.settings import load_settings

    days = int(os.environ.get("REGROW_BENCH_BACKFILL_DAYS", YEAR))
    events = int(os.environ.get("REGROW_BENCH_BACKFILL_EVENTS", 2000))
    root = ctx.work_dir / "backfill_range"
    root.mkdir(parents=True, exist_ok=True)
    settings = load_settings(write_params(root))
    below = os.environ.get("REGROW_BENCH_INTERPRETED_BELOW_MIB")
    if below is not None:
        spark_settings = settings.spark.model_copy(update={"interpreted_below_mib": float(below)})
        settings = settings.model_copy(update={"spark": spark_settings})
    simulator = settings.simulator.model_copy(update={
        "days": days, "events_per_day": events, "scenario": "stable",
        "start_date": past_start(settings.simulator.start_date, days),
    })  # fmt: skip
    first = simulator.start_date
    last = first + dt.timedelta(days=days - 1)
    landed = time.perf_counter()
    simulate.write_landing(settings.dataset, simulator, settings.landing,
                           settings.resolve(settings.landing.path), days)  # fmt: skip
    landed = time.perf_counter() - landed
    spark = ctx.spark
    rss = PeakRss(jvm_pid=jvm_pid(spark))
    stage_ctx = stage_context(settings, "bench-backfill", spark=spark)

    def progress(day: dict) -> None:
        done = len(seen) + 1
        seen.append(day)
        if done % 10 == 0 or done == days:
            print(f"   day {done}/{days} {day['day']}: {day['seconds']:.1f} s {day['stages']}",
                  flush=True)  # fmt: skip

    seen: list[dict] = []
    rss.start()
    started = time.perf_counter()
    report = backfill(stage_ctx, first, last, progress)
    total = time.perf_counter() - started
    rss.stop("backfill")

    per_day = [d["seconds"] for d in report.days]
    # Small days come in blocks (SILVER_BLOCK_DAYS, after the first day alone): a block's
    # first day carries the block's ingest and its silver pass, the others little, so a day
    # is the mean of the days after the first day and block (Spark's and GX's warm-up),
    # not a median.
    first_block = per_day[: 1 + SILVER_BLOCK_DAYS]
    steady = per_day[1 + SILVER_BLOCK_DAYS :] or per_day
    mean_day = statistics.fmean(steady)
    year_minutes = (
        total / 60
        if days >= YEAR
        else (sum(first_block) + mean_day * (YEAR - len(first_block))) / 60
    )
    validation = [
        d["stages"]["validate_bronze"] + d["stages"]["validate_silver"] for d in report.days[1:]
    ]
    stage_means = {
        name: statistics.fmean(d["stages"][name] for d in report.days[1:] or report.days)
        for name in report.days[0]["stages"]
    }
    measured = "measured" if days >= YEAR else f"projected from {days} days"
    return Measurement(
        parameters={
            "days": days,
            "events_per_day": events,
            "first": str(first),
            "last": str(last),
            "land_s": round(landed, 1),
            "blocked": report.blocked,
            # Spark's expressions interpreted, not compiled: days below
            # spark.interpreted_below_mib.
            "interpreted": report.interpreted,
            "interpreted_below_mib": settings.spark.interpreted_below_mib,
        },
        timings={"backfill_total": [total], "day_mean": [mean_day]}
        | {f"stage_{k}_mean": [v] for k, v in stage_means.items()},
        derived={
            "year_minutes": year_minutes,
            "seconds_per_day_mean": mean_day,
            "validation_s_per_day_median": statistics.median(validation) if validation else 0.0,
        },
        targets=[
            Target(
                "neg_year_minutes",
                -year_minutes,
                -TARGET_MINUTES,
                f"365 days at 2,000 events a day in at most {TARGET_MINUTES:.0f} minutes "
                f"(recorded negated; {measured})",
            ),
            Target(
                "neg_small_day_validation_s",
                -(statistics.median(validation) if validation else 0.0),
                -SMALL_DAY_VALIDATION_S,
                "a small day's validation (bronze and silver tables) in a range run at most "
                f"{SMALL_DAY_VALIDATION_S:.0f} s (recorded negated)",
            ),
        ],
        memory=rss.phases,
        notes=[
            f"the year is {measured}: the first block of days (warm-up) plus the mean "
            "day after it for the rest"
            if days < YEAR
            else "the whole year was run",
            "tables equal to a day-by-day run: tests/integration/test_backfill.py",
        ],
    )
