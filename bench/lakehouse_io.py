"""lakehouse_io: writing and reading a Delta table through ``regrow.storage.lakehouse`` against
plain pyarrow Parquet on the same data, machine and run.

What is timed:

- ``lakehouse_write``: ``Lakehouse.write(df, ..., "overwrite", partition_by=[event_date])``
  of a Spark DataFrame already cached in Spark memory (``.cache().count()`` beforehand),
  until the Delta version is committed. Each run writes a new table (the previous one is
  deleted untimed), so it is the create-table path.
- ``lakehouse_read``: ``Lakehouse.read(spark, table)`` plus consuming every column in Spark
  with the ``noop`` sink (``df.write.format("noop")``): all rows decoded, nothing written.
- ``pyarrow_write``: ``pq.write_to_dataset`` of the same Arrow table, same partitioning and
  compression (the lakehouse's ``lakehouse.compression``), into a fresh folder.
- ``pyarrow_read``: ``pq.read_table`` of that folder: the full table in Arrow memory.

The cached DataFrame has ``defaultParallelism`` partitions (as Spark reads one ~100 MB
source); ``ref_lakehouse_write_many_slices`` repeats the write from 100 small partitions.

Reference steps (``ref_*``, not targets) separate Spark's own cost from the lakehouse's:
Spark's native Parquet writer/reader on the same data, and an empty Spark job.
Every step: one untimed warm-up, then ``repetitions`` timed runs; the median counts.
Files are read from the OS page cache on both sides (they were just written).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bench import BenchContext, Measurement, PeakRss, Target, benchmark, repeat

TABLE = "bench.events"
DATE_COLUMN = "event_date"
DAYS = 10
WRITE_TARGET = 0.5  # lakehouse write throughput / pyarrow's
READ_TARGET = 0.7  # lakehouse read throughput / pyarrow's


@benchmark(
    "lakehouse_io", "Delta write/read through regrow.storage.lakehouse vs plain pyarrow Parquet"
)
def run(ctx: BenchContext) -> Measurement:
    from regrow.settings import LakehouseSettings
    from regrow.storage.delta_spark import _SPARK_CODEC, spark_has_delta
    from regrow.storage.lakehouse import Lakehouse

    spark = ctx.spark
    rss = PeakRss(jvm_pid=_jvm_pid(spark))
    reps = ctx.repetitions

    rss.start()
    events = simulated_events(ctx.rows, DAYS)
    rss.stop("simulate")
    rss.start()
    df = cached_frame(spark, events, spark.sparkContext.defaultParallelism)
    cached_rows = df.count()
    rss.stop("spark_cache")
    if cached_rows != events.num_rows:
        raise RuntimeError(f"cached {cached_rows} rows, expected {events.num_rows}")

    # Each engine on its own root; delta-rs's figures keep their names (the earlier
    # results'), delta-spark's (when `make setup` fetched its jars) start with delta_spark_.
    engines = {"lakehouse": "delta-rs"}
    if spark_has_delta(spark):
        engines["delta_spark"] = "delta-spark"
    houses = {
        prefix: Lakehouse(LakehouseSettings(engine=engine), str(ctx.work_dir / engine))
        for prefix, engine in engines.items()
    }
    lakehouse = houses["lakehouse"]
    codec = lakehouse.settings.compression  # the same on every side
    table_dir = Path(lakehouse.uri(TABLE))
    arrow_dir = ctx.work_dir / "pyarrow_dataset"
    arrow_file = ctx.work_dir / "pyarrow_single.parquet"
    spark_dir = ctx.work_dir / "spark_parquet"

    timings: dict[str, list[float]] = {}

    def write_arrow() -> None:
        pq.write_to_dataset(events, str(arrow_dir), partition_cols=[DATE_COLUMN], compression=codec)

    def read_arrow() -> None:
        pq.read_table(str(arrow_dir))

    for prefix, house in houses.items():

        def write_lakehouse(house=house) -> None:
            house.write(df, TABLE, "overwrite", partition_by=[DATE_COLUMN])

        def read_lakehouse(house=house) -> None:
            house.read(spark, TABLE).write.format("noop").mode("overwrite").save()

        folder = Path(house.uri(TABLE))
        rss.start()
        timings[f"{prefix}_write"] = repeat(
            write_lakehouse, reps, setup=lambda f=folder: _remove(f)
        )
        rss.stop(f"{prefix}_write")
        rss.start()
        timings[f"{prefix}_read"] = repeat(read_lakehouse, reps)
        rss.stop(f"{prefix}_read")
        if house.read(spark, TABLE).count() != events.num_rows:
            raise RuntimeError(f"{engines[prefix]} read back a different number of rows")
    rss.start()
    timings["pyarrow_write"] = repeat(write_arrow, reps, setup=lambda: _remove(arrow_dir))
    rss.stop("pyarrow_write")
    rss.start()
    timings["pyarrow_read"] = repeat(read_arrow, reps)
    rss.stop("pyarrow_read")

    # Correctness of what was timed (untimed): every row arrives on both sides.
    read_back = lakehouse.read(spark, TABLE).count()
    arrow_back = pq.read_table(str(arrow_dir)).num_rows
    if read_back != events.num_rows or arrow_back != events.num_rows:
        raise RuntimeError(
            f"read back {read_back} (lakehouse) and {arrow_back} (pyarrow) rows, "
            f"expected {events.num_rows}"
        )

    # References: a single unpartitioned file, Spark's native Parquet, an empty Spark job.
    timings["ref_pyarrow_write_single_file"] = repeat(
        lambda: pq.write_table(events, str(arrow_file), compression=codec), reps
    )
    timings["ref_pyarrow_read_single_file"] = repeat(lambda: pq.read_table(str(arrow_file)), reps)
    timings["ref_spark_parquet_write"] = repeat(
        lambda: (
            df.write.mode("overwrite")
            .partitionBy(DATE_COLUMN)
            .option("compression", _SPARK_CODEC[codec])
            .parquet(str(spark_dir))
        ),
        reps,
    )
    timings["ref_spark_read_lakehouse_files"] = repeat(
        lambda: spark.read.parquet(str(table_dir)).write.format("noop").mode("overwrite").save(),
        reps,
    )
    timings["ref_spark_read_pyarrow_files"] = repeat(
        lambda: spark.read.parquet(str(arrow_dir)).write.format("noop").mode("overwrite").save(),
        reps,
    )
    timings["ref_lakehouse_to_arrow"] = repeat(lambda: lakehouse.to_arrow(TABLE), reps)
    timings["ref_spark_to_python_arrow_drain"] = repeat(
        lambda: df.mapInArrow(_drain, "n long").collect(), reps
    )
    # The same write from a DataFrame in many small partitions (createDataFrame's own
    # slicing, one per Arrow batch of 10,000 rows), as after a wide shuffle: one Python task
    # and one file per partition value per slice.
    sliced = cached_frame(spark, events, None)
    sliced.count()
    timings["ref_lakehouse_write_many_slices"] = repeat(
        lambda: lakehouse.write(
            sliced, "bench.events_sliced", "overwrite", partition_by=[DATE_COLUMN]
        ),
        reps,
        setup=lambda: _remove(Path(lakehouse.uri("bench.events_sliced"))),
    )
    many_slices = sliced.rdd.getNumPartitions()
    sliced.unpersist()
    timings["ref_spark_empty_job"] = repeat(
        lambda: spark.range(1).write.format("noop").mode("overwrite").save(), reps
    )

    medians = {step: statistics.median(t) for step, t in timings.items()}
    rows = events.num_rows
    megabytes = events.nbytes / 1e6
    derived: dict[str, float] = {}
    steps = [f"{p}_{s}" for p in houses for s in ("write", "read")]
    for step in (*steps, "pyarrow_write", "pyarrow_read"):
        derived[f"{step}_rows_per_s"] = rows / medians[step]
        derived[f"{step}_mb_per_s"] = megabytes / medians[step]
    if "delta_spark" in houses:
        for step in ("write", "read"):  # above 1: delta-spark is faster
            derived[f"delta_spark_{step}_vs_delta_rs"] = (
                medians[f"lakehouse_{step}"] / medians[f"delta_spark_{step}"]
            )
            spark_ref = (
                "ref_spark_parquet_write" if step == "write" else "ref_spark_read_pyarrow_files"
            )
            derived[f"delta_spark_{step}_vs_spark_parquet"] = (
                medians[spark_ref] / medians[f"delta_spark_{step}"]
            )
    write_ratio = medians["pyarrow_write"] / medians["lakehouse_write"]
    read_ratio = medians["pyarrow_read"] / medians["lakehouse_read"]
    derived["write_throughput_ratio"] = write_ratio
    derived["read_throughput_ratio"] = read_ratio
    derived["lakehouse_write_vs_spark_parquet_write"] = (
        medians["ref_spark_parquet_write"] / medians["lakehouse_write"]
    )
    derived["lakehouse_read_vs_spark_parquet_read"] = (
        medians["ref_spark_read_pyarrow_files"] / medians["lakehouse_read"]
    )

    layout = {
        "lakehouse": _layout(table_dir),
        "lakehouse_many_slices": _layout(Path(lakehouse.uri("bench.events_sliced"))),
        "pyarrow_dataset": _layout(arrow_dir),
        "spark_parquet": _layout(spark_dir),
    }
    breakdown: dict[str, Any] = {"files": layout}
    if ctx.profile:
        breakdown["lakehouse_write"] = profile_write(lakehouse, df, ctx.work_dir / "profile")
        breakdown["lakehouse_read"] = profile_read(lakehouse, spark)
        breakdown["writer_in_driver"] = profile_writer_in_driver(
            events, ctx.work_dir / "inproc", codec
        )

    df.unpersist()
    return Measurement(
        parameters={
            "rows": rows,
            "date_partitions": DAYS,
            "columns": events.column_names,
            "arrow_bytes": events.nbytes,
            "spark_partitions": df.rdd.getNumPartitions(),
            "spark_partitions_many_slices": many_slices,
            "spark_default_parallelism": spark.sparkContext.defaultParallelism,
            "engines": {f"{p}_*": e for p, e in engines.items()},
            "compression": codec,
            "repetitions": reps,
            "warmup": 1,
            "read_consumed_by": "noop sink (df.write.format('noop')): all columns decoded",
            "mb": "10^6 bytes of the in-memory Arrow table (same for every step)",
        },
        timings=timings,
        derived=derived,
        targets=[
            Target(
                "write_throughput_ratio",
                write_ratio,
                WRITE_TARGET,
                "lakehouse write throughput / pyarrow write_to_dataset throughput",
            ),
            Target(
                "read_throughput_ratio",
                read_ratio,
                READ_TARGET,
                "lakehouse read (Spark, noop sink) throughput / pq.read_table throughput",
            ),
        ],
        memory=rss.phases,
        breakdown=breakdown,
        notes=[
            "lakehouse and pyarrow run on the same cores; Spark is local[*]",
            "files are read hot from the OS page cache on every side",
            "peak RSS: the Python driver and the Spark JVM; Spark's Python workers are not counted",
        ],
    )


def cached_frame(spark, events: pa.Table, partitions: int | None):
    """``events`` as a Spark DataFrame held in Spark memory, in ``partitions`` partitions
    (None: createDataFrame's own slicing). Checkpointed before caching: a DataFrame made
    from local data otherwise ships that data inside every task of every later job."""
    df = spark.createDataFrame(events)
    if partitions is not None:
        df = df.coalesce(partitions)
    return df.localCheckpoint(eager=True).cache()


def _drain(batches):
    """A mapInArrow function that only receives its input: Spark-to-Python transfer cost."""
    rows = sum(batch.num_rows for batch in batches)
    yield pa.RecordBatch.from_pydict({"n": [rows]})


def simulated_events(rows: int, days: int) -> pa.Table:
    """``rows`` events of the built-in simulator over ``days`` days (the contract's columns:
    strings, doubles, a UTC timestamp, a boolean) plus the ``event_date`` partition column."""
    import pyarrow.compute as pc

    from regrow.data.simulate import TRUTH_LABEL, TRUTH_LABEL_TIME, simulate_day
    from regrow.settings import load_settings

    settings = load_settings()
    sim = settings.simulator.model_copy(
        update={"events_per_day": math.ceil(rows / days), "scenario": "stable"}
    )
    pieces = []
    for day in range(days):
        frame = simulate_day(settings.dataset, sim, day).drop(
            columns=[TRUTH_LABEL, TRUTH_LABEL_TIME]
        )
        pieces.append(pa.Table.from_pandas(frame, preserve_index=False))
    table = pa.concat_tables(pieces).slice(0, rows).combine_chunks()
    timestamp = settings.dataset.event_timestamp
    table = table.append_column(DATE_COLUMN, pc.cast(table[timestamp], pa.date32()))
    return table.replace_schema_metadata(None)


# ---------------------------------------------------------------------------- breakdowns
def profile_write(lakehouse, df, log_dir: Path) -> dict[str, Any]:
    """One extra, instrumented lakehouse write: driver metadata and commit calls, and per
    Spark task the seconds spent waiting for input batches (the JVM converting cached rows
    to Arrow and sending them) versus inside the writer (split, cast, Parquet, stats)."""
    from deltalake import transaction

    import regrow.storage.commit as commit_protocol
    import regrow.storage.lakehouse as lh

    log_dir.mkdir(parents=True, exist_ok=True)
    driver: dict[str, float] = {}
    originals = {
        "exists": lh.Lakehouse.exists,
        "_version_of": commit_protocol._version_of,
        "create_table_with_add_actions": transaction.create_table_with_add_actions,
        "_file_writer": lh.file_writer,
    }

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                driver[name] = driver.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    def file_writer(*args, **kwargs):
        inner = originals["_file_writer"](*args, **kwargs)
        log = str(log_dir)

        def write(batches):
            wait = {"s": 0.0, "rows": 0, "batches": 0}

            def pulled():
                it = iter(batches)
                while True:
                    t = time.perf_counter()
                    try:
                        batch = next(it)
                    except StopIteration:
                        wait["s"] += time.perf_counter() - t
                        return
                    wait["s"] += time.perf_counter() - t
                    wait["rows"] += batch.num_rows
                    wait["batches"] += 1
                    yield batch

            start_wall, start = time.time(), time.perf_counter()
            yield from inner(pulled())
            total = time.perf_counter() - start
            record = {
                "pid": os.getpid(),
                "start": start_wall,
                "end": time.time(),
                "total_s": total,
                "input_wait_s": wait["s"],
                "rows": wait["rows"],
                "batches": wait["batches"],
            }
            with open(f"{log}/task-{os.getpid()}-{start_wall}.json", "w") as out:
                json.dump(record, out)

        return write

    # Warm the Python workers first (Spark retires workers idle for a minute).
    _remove(Path(lakehouse.uri(TABLE)))
    lakehouse.write(df, TABLE, "overwrite", partition_by=[DATE_COLUMN])
    _remove(Path(lakehouse.uri(TABLE)))
    lh.Lakehouse.exists = timed("exists", originals["exists"])
    commit_protocol._version_of = timed("version_of (history)", originals["_version_of"])
    transaction.create_table_with_add_actions = timed(
        "commit (create_table_with_add_actions)", originals["create_table_with_add_actions"]
    )
    lh.file_writer = file_writer
    try:
        started = time.perf_counter()
        lakehouse.write(df, TABLE, "overwrite", partition_by=[DATE_COLUMN])
        total = time.perf_counter() - started
    finally:
        lh.Lakehouse.exists = originals["exists"]
        commit_protocol._version_of = originals["_version_of"]
        transaction.create_table_with_add_actions = originals["create_table_with_add_actions"]
        lh.file_writer = originals["_file_writer"]

    tasks = [json.loads(p.read_text()) for p in sorted(log_dir.glob("task-*.json"))]
    spark_job = total - sum(driver.values())
    span = max(t["end"] for t in tasks) - min(t["start"] for t in tasks) if tasks else 0.0
    return {
        "total_s": total,
        "driver_s": driver,
        "spark_job_s": spark_job,
        "tasks": len(tasks),
        "task_python_span_s": span,
        "spark_job_outside_python_tasks_s": spark_job - span,
        "sum_task_input_wait_s": sum(t["input_wait_s"] for t in tasks),
        "sum_task_writer_s": sum(t["total_s"] - t["input_wait_s"] for t in tasks),
        "per_task": tasks,
    }


def profile_read(lakehouse, spark) -> dict[str, Any]:
    """Building the DataFrame (Delta log, file list, Spark relation) versus scanning it."""
    plan, scan = [], []
    for _ in range(3):
        started = time.perf_counter()
        frame = lakehouse.read(spark, TABLE)
        plan.append(time.perf_counter() - started)
        started = time.perf_counter()
        frame.write.format("noop").mode("overwrite").save()
        scan.append(time.perf_counter() - started)
    return {"build_dataframe_s": statistics.median(plan), "noop_scan_s": statistics.median(scan)}


def profile_writer_in_driver(events: pa.Table, out_dir: Path, codec: str) -> dict[str, Any]:
    """The lakehouse's per-task writer run in this process on the Arrow table, cut in
    batches of Spark's ``maxRecordsPerBatch`` (10,000): its cost without Spark, on one core,
    next to pyarrow's dataset writer on one thread."""
    from regrow.storage.delta_log import nullable
    from regrow.storage.writer import file_writer

    data_schema = nullable(pa.schema([f for f in events.schema if f.name != DATE_COLUMN]))
    batches = events.to_batches(max_chunksize=10_000)
    runs: dict[str, list[float]] = {"lakehouse_writer_1_core": [], "pyarrow_dataset_1_thread": []}
    for i in range(3):
        target = out_dir / f"lh-{i}"
        target.mkdir(parents=True)
        writer = file_writer(str(target), TABLE, [DATE_COLUMN], None, data_schema, {}, codec)
        started = time.perf_counter()
        for _ in writer(iter(batches)):
            pass
        runs["lakehouse_writer_1_core"].append(time.perf_counter() - started)
        started = time.perf_counter()
        pq.write_to_dataset(
            events,
            str(out_dir / f"pa-{i}"),
            partition_cols=[DATE_COLUMN],
            compression=codec,
            use_threads=False,
        )
        runs["pyarrow_dataset_1_thread"].append(time.perf_counter() - started)
    layout = _layout(out_dir / "lh-0")
    shutil.rmtree(out_dir, ignore_errors=True)
    return {**{k: statistics.median(v) for k, v in runs.items()}, "lakehouse_writer_layout": layout}


# ------------------------------------------------------------------------------- helpers
def _layout(folder: Path) -> dict[str, Any]:
    """Data files, their bytes and row groups (small row groups slow every later read)."""
    files = [p for p in folder.rglob("*.parquet") if "_delta_log" not in p.parts]
    row_groups = sum(pq.ParquetFile(p).metadata.num_row_groups for p in files)
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
    return {
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "row_groups": row_groups,
        "mean_rows_per_row_group": rows / row_groups if row_groups else 0,
    }


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _jvm_pid(spark) -> int | None:
    try:
        return int(spark._jvm.java.lang.ProcessHandle.current().pid())
    except Exception:  # noqa: BLE001  (py4j errors; Spark Connect has no JVM here)
        return None
