"""validation_cost: the Great Expectations gate of a day against the ingest that wrote it.

Acceptance: validating a 1M-row partition costs at most 30% of the time of the ingest
that wrote it. One day of ``ctx.rows`` simulated events (scenario ``stable``) is landed
as CSV with ``regrow.data.simulate.write_landing`` (untimed), in a params.yaml rooted in the
scratch folder (landing, lakehouse and reports under it; the suites of ``expectations/``).

What is timed, per repetition and in this order:

- ``ingest``: ``ingest_day(ctx, day)``: read the landed CSV, type and split
  rows, the row-level expectations, write ``bronze.events``, ``bronze.labels`` and
  ``bronze.quarantine`` (the day's partitions replaced: rerunning is idempotent).
- ``validate_events``: ``validate_day(..., tables=["bronze.events"])`` of that day: the
  events suite on the day's 1M-row partition, its Data Docs and its ``gold.validation``
  rows.
- ``validate_all_tables``: ``validate_day`` of the same day on all three tables.

A first ingest + validation of a small day (10,000 events) in another root is run before
and not timed, so that Spark's JIT, the Python workers and the import of GX are not
counted. The median of ``ctx.repetitions`` counts. Files are read hot from the OS page
cache (they were just written).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from bench import BENCH_DIR, BenchContext, Measurement, PeakRss, Target, benchmark
from regrow.catalog import BRONZE_TABLES, EVENTS

REPO = BENCH_DIR.parent
WARMUP_ROWS = 10_000
# Acceptance: validation / ingest <= 0.30. Target is "value >= minimum", so the inverse is
# the target: ingest / validation >= 1 / 0.30.
MAX_VALIDATION_OVER_INGEST = 0.30
ALL_TABLES = BRONZE_TABLES


@benchmark(
    "validation_cost",
    "validate_day (GX suites) of a day's 1M-row bronze partition vs the ingest_day that wrote it",
)
def run(ctx: BenchContext) -> Measurement:
    from regrow.data.ingest import ingest_day
    from regrow.orchestration.context import stage_context
    from regrow.storage.lakehouse import Lakehouse
    from regrow.validation import ValidationError, partition_counts, validate_day

    spark = ctx.spark
    reps = ctx.repetitions
    rss = PeakRss(jvm_pid=_jvm_pid(spark))

    # Untimed warm-up: a small day, its own root.
    warm_settings, warm_day = _land(ctx.work_dir / "warmup", WARMUP_ROWS)
    warm = stage_context(warm_settings, "warmup", spark=spark)
    ingest_day(warm, warm_day)
    _validate(validate_day, ValidationError, warm, warm_day, ALL_TABLES)

    small = _small_day_both_ways(ctx, validate_day, ValidationError)

    rss.start()
    started = time.perf_counter()
    settings, day = _land(ctx.work_dir / "validation_cost", ctx.rows)
    land_s = time.perf_counter() - started
    rss.stop("simulate_and_land")
    lakehouse = Lakehouse.from_settings(settings)

    timings: dict[str, list[float]] = {
        "ingest": [],
        "validate_events": [],
        "validate_all_tables": [],
    }
    reports: list[Any] = []
    failures: dict[str, list[str]] = {}
    for i in range(reps):
        run_id = f"bench-{i}"
        rss.start()
        started = time.perf_counter()
        run = stage_context(settings, run_id, spark=spark, lakehouse=lakehouse)
        reports.append(ingest_day(run, day))
        timings["ingest"].append(time.perf_counter() - started)
        rss.stop("ingest")
        for step, tables in (("validate_events", (EVENTS,)), ("validate_all_tables", ALL_TABLES)):
            rss.start()
            started = time.perf_counter()
            failed = _validate(validate_day, ValidationError, run, day, tables)
            timings[step].append(time.perf_counter() - started)
            rss.stop(step)
            if failed:
                failures.setdefault(step, []).extend(failed)

    # Untimed: what was ingested and validated.
    report = reports[-1]
    counts = {t: partition_counts(lakehouse, t).get(str(day), 0) for t in ALL_TABLES}
    if report.events.rows_in != ctx.rows:
        raise RuntimeError(f"landed {report.events.rows_in} events, expected {ctx.rows}")
    validated_all_rows = sum(counts.values())

    medians = {step: statistics.median(t) for step, t in timings.items()}
    ingest, events_v, all_v = (
        medians["ingest"],
        medians["validate_events"],
        medians["validate_all_tables"],
    )
    timings |= small
    derived = {
        "small_day_from_files_over_in_memory": statistics.median(small[SMALL_FILES])
        / statistics.median(small[SMALL_IN_MEMORY]),
        "validation_over_ingest": events_v / ingest,
        "validation_all_tables_over_ingest": all_v / ingest,
        "ingest_over_validation": ingest / events_v,
        "ingest_over_validation_all_tables": ingest / all_v,
        "ingest_rows_per_s": (report.events.rows_in + report.labels.rows_in) / ingest,
        "validate_events_rows_per_s": counts[EVENTS] / events_v,
        "validate_all_tables_rows_per_s": validated_all_rows / all_v,
    }

    breakdown: dict[str, Any] = {
        "ingest_report": report.as_dict(),
        "partition_rows": counts,
        "critical_failures": failures,
    }
    if ctx.profile:
        breakdown["validate_all_tables"] = _profile_validate(
            validate_day, ValidationError, stage_context(settings, "profile", spark=spark), day
        )

    minimum = round(1 / MAX_VALIDATION_OVER_INGEST, 2)
    return Measurement(
        parameters={
            "rows": ctx.rows,
            "day": day.isoformat(),
            "landing_format": settings.landing.format,
            "scenario": "stable",
            "landed_events": report.events.rows_in,
            "landed_labels": report.labels.rows_in,
            "partition_rows": counts,
            "lakehouse_engine": lakehouse.engine(spark),
            "spark_default_parallelism": spark.sparkContext.defaultParallelism,
            "repetitions": reps,
            "warmup": f"one ingest + validate_day of a {WARMUP_ROWS}-event day in another root",
            "simulate_and_land_s": land_s,
            "order": "per repetition: ingest, validate_events, validate_all_tables",
            "small_day": (
                f"{SMALL_ROWS} events, all bronze tables without Data Docs, expressions "
                f"interpreted (as a range runs small days), {SMALL_PAIRS} pairs in "
                "alternating order, after the warm-up"
            ),
        },
        timings=timings,
        derived=derived,
        targets=[
            Target(
                "ingest_over_validation",
                ingest / events_v,
                minimum,
                f"ingest_day / validate_day(bronze.events) time >= {minimum}, i.e. validation "
                f"of the 1M-row partition <= {MAX_VALIDATION_OVER_INGEST:.0%} of its ingest "
                "(derived validation_over_ingest <= 0.30)",
            ),
        ],
        memory=rss.phases,
        breakdown=breakdown,
        notes=[
            "acceptance is validation_over_ingest <= 0.30; Target only knows minimums, so the "
            f"target is its inverse ingest_over_validation >= {minimum}",
            "validate_* include reading the day's partition counts, running the suites on "
            "Spark, writing GX results and Data Docs under reports/ and gold.validation rows",
            "ingest includes the row-level expectations it applies before writing bronze",
            "validate_events is the first read of the table version the ingest just wrote and "
            "pays a first-read-after-write cost (measured once at ~11-16 s more than a repeat, "
            "GC ruled out); validate_all_tables runs right after it on the same version and "
            "does not, so validation_all_tables_over_ingest understates the all-tables cost",
            "the ingest reads the landed CSV and the validations read bronze hot from the OS "
            "page cache; Spark is local[*] on the same cores",
        ],
    )


SMALL_ROWS = 2_000
SMALL_PAIRS = 10
SMALL_IN_MEMORY, SMALL_FILES = "small_day_validate_in_memory", "small_day_validate_from_files"


def _small_day_both_ways(ctx: BenchContext, validate_day, error) -> dict[str, list[float]]:
    """A small day's validation (all bronze tables, no Data Docs: a range builds them once
    at its end) two ways, alternating in one process: its partitions read into memory, as
    the gate reads them (``Lakehouse.read_to_query``), and from their files (the limit,
    ``LOCAL_READ_BYTES``, at 0)."""
    from regrow.data.ingest import ingest_day
    from regrow.orchestration.context import stage_context
    from regrow.storage import lakehouse as lakehouse_module
    from regrow.storage.session import interpreted

    settings, day = _land(ctx.work_dir / "small_day", SMALL_ROWS)
    run = stage_context(settings, "small", spark=ctx.spark)
    ingest_day(run, day)
    limit = lakehouse_module.LOCAL_READ_BYTES
    timings: dict[str, list[float]] = {SMALL_IN_MEMORY: [], SMALL_FILES: []}
    try:
        with interpreted(ctx.spark, settings.spark):
            for i in range(SMALL_PAIRS):
                ways = (SMALL_IN_MEMORY, SMALL_FILES)
                for way in ways if i % 2 else reversed(ways):
                    lakehouse_module.LOCAL_READ_BYTES = limit if way == SMALL_IN_MEMORY else 0
                    started = time.perf_counter()
                    _validate(validate_day, error, run, day, ALL_TABLES, data_docs=False)
                    timings[way].append(time.perf_counter() - started)
    finally:
        lakehouse_module.LOCAL_READ_BYTES = limit
    return timings


def _land(root: Path, rows: int):
    """One day of ``rows`` simulated events landed as CSV under ``root``; its settings."""
    from regrow.data.simulate import write_landing
    from regrow.settings import load_settings

    root.mkdir(parents=True, exist_ok=True)
    settings = load_settings(write_params(root))
    sim = settings.simulator.model_copy(update={"events_per_day": rows, "scenario": "stable"})
    landing = settings.landing
    write_landing(settings.dataset, sim, landing, settings.resolve(landing.path), days=1)
    return settings, sim.start_date


def write_params(directory: Path, engine: str = "delta-rs") -> Path:
    """The repo's params.yaml with landing, lakehouse and reports under ``directory``, the
    suites of ``expectations/`` (as ``tests.conftest.write_params``) and the lakehouse
    ``engine`` (delta-rs unless a benchmark compares the engines: figures stay comparable
    whether or not `make setup` fetched the Delta jars)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["landing"]["path"] = str(directory / "landing")
    raw["landing"]["format"] = "csv"
    raw["lakehouse"]["root"] = str(directory / "lakehouse")
    raw["lakehouse"]["engine"] = engine
    raw["reports_dir"] = str(directory / "reports")
    raw["validation"]["expectations_dir"] = str(REPO / "expectations")
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _validate(validate_day, error, ctx, day, tables, data_docs: bool = True) -> list[str]:
    """``validate_day``; a critical failure is still a full validation: return its message."""
    try:
        validate_day(ctx, day, tables=list(tables), data_docs=data_docs)
    except error as err:
        return [str(err)]
    return []


def _profile_validate(validate_day, error, ctx, day) -> dict[str, Any]:
    """One extra ``validate_day`` of all tables with its ``validate`` (one table's suite, GX
    results and Data Docs) timed per table; the rest is partition counts, reads and the
    ``gold.validation`` writes."""
    # The name validate_day calls: the gate module's own (patching the package's re-export
    # would time nothing).
    from regrow.validation import gate as validation

    original = validation.validate
    per_table: dict[str, float] = {}

    def timed(df, suite, table, *args, **kwargs):
        started = time.perf_counter()
        try:
            return original(df, suite, table, *args, **kwargs)
        finally:
            per_table[table] = time.perf_counter() - started

    validation.validate = timed
    try:
        started = time.perf_counter()
        _validate(validate_day, error, ctx, day, ALL_TABLES)
        total = time.perf_counter() - started
    finally:
        validation.validate = original
    return {
        "total_s": total,
        "gx_validate_per_table_s": per_table,
        "outside_gx_validate_s": total - sum(per_table.values()),
    }


def _jvm_pid(spark) -> int | None:
    try:
        return int(spark._jvm.java.lang.ProcessHandle.current().pid())
    except Exception:  # noqa: BLE001  (py4j errors; Spark Connect has no JVM here)
        return None
