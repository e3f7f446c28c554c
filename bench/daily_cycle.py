"""daily_cycle: one day through regrow's whole daily chain against a hand-written pandas +
XGBoost script doing the same to the same files, in the same run; and ``task_overhead``:
what running a Spark job task costs before it does anything.

Acceptance (the project's issue): a 1M-row day through ingest → validate → features →
labels → score takes at most 1.5x the time of the hand-written script; a 10M-row day at
most 11x the 1M-row day's time, with peak RSS at most 6 GB.

Data (untimed, in a child process so that the simulator's memory never inflates the
driver's RSS): the simulator (scenario ``stable``, ``EVENTS_PER_CARD`` events per card on
the measured day) lands the measured day with ``rows`` events and, before it, the
``features.lookback_days()`` days its longest window reads (7 with the default 7d), with
``LOOKBACK_SHARE`` of its volume each: full-size look-back days would multiply the landing,
the untimed backfill and the baseline's reads by 8 for a step that only the look-back
aggregation needs. Every day is ``simulate_day`` of its own day index (so event ids never
repeat across days) and is written by the helpers of the simulator's ``write_landing``
(which lands every day at one volume), labels included: the chargebacks that arrive on
each day, whichever day their event was.

The model is fitted once, the retrain's way, as ``bench.scoring.train_champion`` does (400
trees of the ``train`` params on 80,000 labelled rows of a smaller simulation); regrow
scores with it through an in-memory registry (no MLflow), the script with the same booster
saved as UBJSON and its transform as JSON.

Before timing, ``regrow.data.backfill.backfill`` builds the look-back days (ingest,
validation, features, labels) and ``score_day`` scores the last of them: the JVM, Great
Expectations and the Python workers are warm. Then, per repetition, in this order:

- ``regrow_*``: the day as the ``regrow_ingest`` and ``regrow_score`` DAGs run it, one
  stage after the other in this process's SparkSession: ``ingest_day``, ``validate_day``
  (bronze, Data Docs included), ``build_features``, ``build_labels``, ``validate_day``
  (silver) and ``score_day`` (the ``regrow score`` code: predictions written in one pass,
  the lineage rows, the gold.predictions suite). ``regrow_cycle`` is their sum. Reruns
  replace the day's partitions.
- ``pandas_*``: ``bench/pandas_cycle.py`` in a fresh Python process: its ``read``,
  ``clean``, ``features``, ``labels``, ``score`` and ``write`` steps as it times them
  (``pandas_cycle`` their sum: interpreter start and imports are not in it, as the JVM start
  is not in regrow's), and ``pandas_process``, the process's wall time.

Both sides' outputs are then compared (untimed): rows per table, and the feature values
and scores of the same events.

Sizes: ``--rows``, or the comma-separated sizes of ``$REGROW_BENCH_CYCLE_SIZES`` (e.g.
``1000000,10000000``) in one run: step names then end in ``_<rows>``, and the largest
size's time over the smallest's is the scaling target (at most 1.1x the size ratio).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import BENCH_DIR, BenchContext, Measurement, PeakRss, Target, benchmark, repeat
from bench.scoring import EVENTS_PER_CARD, jvm_pid, train_champion
from bench.validation_cost import write_params

if TYPE_CHECKING:
    from regrow.model.scoring import Scorer
    from regrow.settings import Settings
    from regrow.storage.lakehouse import Lakehouse

REPO = BENCH_DIR.parent
SIZES_ENV = "REGROW_BENCH_CYCLE_SIZES"
ENGINES_ENV = "REGROW_BENCH_ENGINES"
# Each look-back day's events, as a share of the measured day's (see the module docstring).
LOOKBACK_SHARE = 0.1
MAX_REGROW_OVER_PANDAS = 1.5
# 10x the rows in at most 11x the time: at most 1.1x the size ratio.
MAX_TIME_OVER_SIZE_RATIO = 1.1
MAX_PEAK_RSS_GIB = 6.0
# Feature values and scores are compared on at most this many events (a regular sample).
COMPARED_ROWS = 1_000_000
TOLERANCE = 1e-6  # relative, on feature values and scores


@benchmark(
    "daily_cycle",
    "a day through ingest -> validate -> features -> labels -> score, regrow vs a "
    "hand-written pandas + xgboost script on the same files",
)
def run(ctx: BenchContext) -> Measurement:
    from regrow.settings import load_settings

    spark = ctx.spark
    sizes = cycle_sizes(ctx.rows)
    started = time.perf_counter()
    model_root = ctx.work_dir / "daily_cycle-model"
    model_root.mkdir(parents=True, exist_ok=True)
    settings = load_settings(write_params(model_root))
    scorer, train_facts = train_champion(spark, settings)
    train_s = time.perf_counter() - started

    measurement = Measurement(
        parameters={
            "sizes": sizes,
            "repetitions": ctx.repetitions,
            "events_per_card_per_day": EVENTS_PER_CARD,
            "lookback_share": LOOKBACK_SHARE,
            "scenario": "stable",
            "model_trees": scorer.model.trees,
            **train_facts,
            "train_model_s": train_s,
            "spark_master": spark.sparkContext.master,
            "spark_default_parallelism": spark.sparkContext.defaultParallelism,
            "cores": os.cpu_count(),
            "warmup": "regrow: the backfill of the look-back days and score_day of the last "
            "of them; pandas: none (a fresh process per run, its imports not timed)",
            "order": "per repetition: regrow's stages, then the pandas script",
        },
        timings={},
        notes=[
            "regrow_cycle is the sum of its stages in one warm SparkSession (no JVM start, "
            "no Airflow task start: see the task_overhead benchmark for what a DAG task adds "
            "per stage); pandas_cycle is the sum of the script's steps, without its "
            "interpreter start and imports (pandas_process has them)",
            "regrow does more than the script: typed bronze with every rejected row in "
            "bronze.quarantine with its reason, Great Expectations suites on bronze, silver "
            "and gold.predictions with gold.validation rows and Data Docs, Delta commits, "
            "lineage columns and gold.model_versions; the script only drops bad rows",
            "the script reads the look-back days again from their landing CSV files (a "
            "script keeps no state); regrow reads them from bronze.events",
            f"look-back days hold {LOOKBACK_SHARE:.0%} of the measured day's events each; "
            "bronze validation records a row-count warning for the measured day (10x its "
            "recent days), not a failure",
            "the process-tree RSS is the sampled sum of the RSS of this process and its "
            "children (Spark JVM, Python workers), an upper bound: forked Python workers "
            "share pages; the targets use it",
        ],
    )
    engines = cycle_engines(spark)
    measurement.parameters["engines"] = engines
    for engine in engines:
        # delta-rs's figures keep their names (the earlier results'); delta-spark's end in it.
        tail = "" if engine == "delta-rs" else "_delta_spark"
        cycles = _measure_sizes(ctx, spark, scorer, sizes, engine, measurement, tail)
        for rows, cycle in cycles.items():
            _record(measurement, cycle, _suffix(rows, len(sizes) > 1) + tail)
        if len(cycles) > 1:
            _record_scaling(measurement, cycles[min(cycles)], cycles[max(cycles)], tail)
    # Another tenant's load slows both sides, but not alike (regrow uses both cores).
    measurement.parameters["load_average_1_5_15_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return measurement


def _measure_sizes(
    ctx: BenchContext,
    spark,
    scorer: Scorer,
    sizes: list[int],
    engine: str,
    measurement: Measurement,
    tail: str,
) -> dict[int, dict]:
    """Each size on ``engine``, smallest first. A size that fails (a 10M-row day ran the
    delta-spark engine out of heap) is a failed target and a note, and the larger ones are
    not tried; what was measured before it, on this engine and the others, is kept."""
    cycles: dict[int, dict] = {}
    for rows in sizes:
        try:
            cycles[rows] = _measure_size(ctx, spark, scorer, rows, engine)
        except Exception as err:  # noqa: BLE001 - recorded in the results, not lost
            first = next(
                (line for line in str(err).splitlines() if line.strip()), type(err).__name__
            )
            print(f"   {rows:,} rows on {engine}: FAILED: {first[:300]}", flush=True)
            measurement.notes.append(f"{engine} at {rows:,} rows failed: {first[:300]}")
            measurement.targets.append(Target(
                f"completed_{rows}{tail}", 0.0, 1.0,
                f"the day of {rows:,} rows ran to its end on {engine}",
            ))  # fmt: skip
            break
    return cycles


def cycle_sizes(rows: int) -> list[int]:
    """The day sizes to run: ``$REGROW_BENCH_CYCLE_SIZES`` (comma-separated), else ``rows``."""
    raw = os.environ.get(SIZES_ENV, "").strip()
    if not raw:
        return [rows]
    try:
        sizes = sorted({int(s.replace("_", "")) for s in raw.split(",") if s.strip()})
    except ValueError:
        raise ValueError(f"${SIZES_ENV}={raw!r}: expected row counts separated by commas") from None
    if not sizes or min(sizes) <= 0:
        raise ValueError(f"${SIZES_ENV}={raw!r}: expected positive row counts")
    return sizes


# ----------------------------------------------------------------------------- one size
def cycle_engines(spark) -> list[str]:
    """The lakehouse engines to run the day on: ``$REGROW_BENCH_ENGINES`` (comma-separated),
    else delta-rs and, when this session has the Delta jars (`make setup`), delta-spark."""
    from regrow.storage.delta_spark import spark_has_delta

    raw = os.environ.get(ENGINES_ENV)
    if raw:
        engines = [e.strip() for e in raw.split(",") if e.strip()]
        unknown = sorted(set(engines) - {"delta-rs", "delta-spark"})
        if unknown or not engines:
            raise ValueError(f"${ENGINES_ENV}={raw!r}: expected delta-rs and/or delta-spark")
        return engines
    return ["delta-rs", *(["delta-spark"] if spark_has_delta(spark) else [])]


def _measure_size(ctx: BenchContext, spark, scorer: Scorer, rows: int, engine: str) -> dict:
    """Land a day of ``rows`` events, build its look-back, then time both sides, regrow's
    on the lakehouse ``engine``."""
    from bench.pandas_cycle import BOOSTER_FILE, TRANSFORM_FILE
    from regrow.catalog import EVENTS
    from regrow.data.backfill import backfill
    from regrow.model.scoring import score_day
    from regrow.orchestration.context import stage_context
    from regrow.settings import load_settings
    from regrow.storage.lakehouse import Lakehouse

    root = ctx.work_dir / f"daily_cycle-{rows}-{engine}"
    root.mkdir(parents=True, exist_ok=True)
    params = write_params(root, engine)
    settings = load_settings(params)
    lakehouse = Lakehouse.from_settings(settings)
    registry = InMemoryRegistry(scorer)
    model_dir = root / "model"
    model_dir.mkdir(exist_ok=True)
    scorer.model.booster.save_model(str(model_dir / BOOSTER_FILE))
    (model_dir / TRANSFORM_FILE).write_text(json.dumps(scorer.model.transform.to_dict()))

    print(f"   {rows:,} rows on {engine}: landing", flush=True)
    prepare: dict[str, float] = {}
    started = time.perf_counter()
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as child:
        first, day = child.submit(land, params, rows).result()
    prepare["simulate_and_land_s"] = time.perf_counter() - started

    print(f"   {rows:,} rows: backfill of the look-back days {first}..{day - dt.timedelta(1)}")
    started = time.perf_counter()
    warm = stage_context(settings, "bench-backfill", spark=spark, registry=registry,
                         lakehouse=lakehouse)  # fmt: skip
    backfill(warm, first, day - dt.timedelta(days=1))
    score_day(warm, day - dt.timedelta(days=1))
    prepare["backfill_and_score_lookback_s"] = time.perf_counter() - started

    rss = PeakRss(jvm_pid=jvm_pid(spark))
    timings: dict[str, list[float]] = {}
    pandas_peaks: list[float] = []
    tree_peaks: list[float] = []
    failures: list[str] = []
    out_dir = root / "pandas-out"
    for i in range(ctx.repetitions):
        print(f"   {rows:,} rows: repetition {i + 1}: regrow", flush=True)
        rss.start()
        with TreeRss() as tree:
            steps, failed = regrow_cycle(settings, spark, lakehouse, registry, day, f"bench-{i}")
        rss.stop("regrow_cycle")
        tree_peaks.append(tree.peak_mib)
        failures += failed
        for step, seconds in {**steps, "cycle": sum(steps.values())}.items():
            timings.setdefault(f"regrow_{step}", []).append(seconds)

        print(f"   {rows:,} rows: repetition {i + 1}: pandas", flush=True)
        steps, wall, peak = pandas_cycle(settings.resolve(settings.landing.path), day,
                                         model_dir, out_dir, params)  # fmt: skip
        pandas_peaks.append(peak)
        for step, seconds in {**steps, "cycle": sum(steps.values()), "process": wall}.items():
            timings.setdefault(f"pandas_{step}", []).append(seconds)

    cycle = {
        "rows": rows,
        "day": day,
        "prepare": prepare,
        "timings": timings,
        "memory": {
            "regrow_cycle": {
                **rss.phases.get("regrow_cycle", {}),
                "process_tree_sum_peak_mib": round(max(tree_peaks), 1),
            },
            "pandas_cycle": {"pandas_process_peak_mib": round(max(pandas_peaks), 1)},
        },
        "failures": failures,
        "rows_written": compare_rows(lakehouse, settings, day, out_dir),
        "values": compare_values(lakehouse, settings, day, out_dir),
        "landed": lakehouse.partition_rows(EVENTS),
    }
    shutil.rmtree(root, ignore_errors=True)  # a 10M-row day's files are gigabytes
    return cycle


def regrow_cycle(
    settings: Settings, spark, lakehouse: Lakehouse, registry, day: dt.date, run_id: str
) -> tuple[dict[str, float], list[str]]:
    """The day through regrow's stages, one after the other: seconds per stage, and the
    critical validation failures (a blocked day still runs every stage here, so that every
    repetition does the same work)."""
    from regrow.catalog import SILVER_TABLES
    from regrow.data.features import build_features
    from regrow.data.ingest import ingest_day
    from regrow.data.labels import build_labels
    from regrow.model.scoring import score_day
    from regrow.orchestration.context import stage_context
    from regrow.validation import ValidationError, validate_day

    stages: dict[str, Callable[[Any], Any]] = {
        "ingest": lambda c: ingest_day(c, day),
        "validate_bronze": lambda c: validate_day(c, day),
        "features": lambda c: build_features(c, day),
        "labels": lambda c: build_labels(c, day),
        "validate_silver": lambda c: validate_day(c, day, tables=list(SILVER_TABLES)),
        "score": lambda c: score_day(c, day),
    }
    ctx = stage_context(settings, run_id, spark=spark, registry=registry, lakehouse=lakehouse)
    seconds, failures = {}, []
    for name, stage in stages.items():
        started = time.perf_counter()
        try:
            stage(ctx)
        except ValidationError as err:
            failures.append(f"{run_id} {name}: {err}")
        seconds[name] = time.perf_counter() - started
    return seconds, failures


def pandas_cycle(
    landing: str, day: dt.date, model_dir: Path, out_dir: Path, params: Path
) -> tuple[dict[str, float], float, float]:
    """``bench/pandas_cycle.py`` in a fresh process: its step seconds, the process's wall
    seconds and its peak RSS (MiB)."""
    command = [
        sys.executable, str(BENCH_DIR / "pandas_cycle.py"), "--landing", landing,
        "--day", day.isoformat(), "--model", str(model_dir), "--out", str(out_dir),
        "--params", str(params),
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"bench/pandas_cycle.py failed ({done.returncode}):\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["steps_s"], wall, result["peak_rss_mib"]


class InMemoryRegistry:
    """The registry ``score_day`` needs, holding one version (the champion) in memory: the
    day is scored by ``regrow score``'s code, minus MLflow (the champion's download from
    the tracking server is not timed)."""

    def __init__(self, champion: Scorer) -> None:
        self.champion = champion
        self.name = champion.version.name
        self.uri = "memory://bench"

    def alias(self, alias: str):
        from regrow.catalog import CHAMPION

        return self.champion.version if alias == CHAMPION else None

    def load(self, version: str):
        return self.champion.model

    def version(self, version: str):
        return self.champion.version


# -------------------------------------------------------------------------------- data
def land(params: Path, rows: int) -> tuple[dt.date, dt.date]:
    """Land the look-back days (``LOOKBACK_SHARE`` of ``rows`` events each) and the
    measured day (``rows`` events) under the params' landing path; the first day and the
    measured day. Runs in a child process."""
    import fsspec

    from regrow.data.landing import day_dir
    from regrow.data.simulate import simulate_day
    from regrow.data.simulate.landing_files import _labels_by_day, _replace_day, _serialise
    from regrow.settings import load_settings

    settings = load_settings(params)
    dataset, landing = settings.dataset, settings.landing
    measured = settings.simulator.model_copy(
        update={
            "scenario": "stable",
            "events_per_day": rows,
            "n_entities": max(1, math.ceil(rows / EVENTS_PER_CARD)),
        }
    )
    earlier = measured.model_copy(update={"events_per_day": max(1, round(rows * LOOKBACK_SHARE))})
    lookback = settings.features.lookback_days()
    frames = [simulate_day(dataset, earlier, d) for d in range(lookback)]
    frames.append(simulate_day(dataset, measured, lookback))
    arrived = _labels_by_day(dataset, measured, frames, len(frames))
    fs = fsspec.filesystem("file")
    root = settings.resolve(landing.path)
    name = f"part-00000.{landing.format}"
    for d, (events, labels) in enumerate(zip(frames, arrived, strict=True)):
        day = measured.start_date + dt.timedelta(days=d)
        events_file = _serialise(dataset, landing, events[list(dataset.event_columns())])
        _replace_day(fs, day_dir(root, "events", day), {name: events_file})
        labels_file = _serialise(dataset, landing, labels, kind="labels")
        _replace_day(fs, day_dir(root, "labels", day), {name: labels_file})
    return measured.start_date, measured.start_date + dt.timedelta(days=lookback)


# ------------------------------------------------------------------------------ checks
def compare_rows(
    lakehouse: Lakehouse, settings: Settings, day: dt.date, out_dir: Path
) -> dict[str, dict[str, int]]:
    """Rows of the day in each of regrow's tables and the script's matching file."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from regrow.catalog import (
        CHAMPION,
        EVENTS,
        FEATURES,
        MODEL_ALIAS,
        PREDICTIONS,
        QUARANTINE,
        SILVER_LABELS,
    )

    def rows(table: str) -> int:
        return lakehouse.partition_rows(table).get(str(day), 0)

    # partitioning=None: Delta Spark keeps the partition column inside its files too, and
    # pyarrow would add it again from the folder names, as a clashing type.
    aliases = pq.read_table(_day_files(lakehouse, PREDICTIONS, day), columns=[MODEL_ALIAS],
                            partitioning=None)  # fmt: skip
    champion_rows = pc.sum(pc.equal(aliases.column(MODEL_ALIAS), CHAMPION)).as_py() or 0

    def written(name: str) -> int:
        return pq.ParquetFile(out_dir / f"{name}.parquet").metadata.num_rows

    return {
        "events": {"regrow": rows(EVENTS), "pandas": written("events")},
        "features": {"regrow": rows(FEATURES), "pandas": written("features")},
        "labels": {"regrow": rows(SILVER_LABELS), "pandas": written("labels")},
        "predictions": {"regrow": champion_rows, "pandas": written("predictions")},
        "quarantined": {"regrow": rows(QUARANTINE), "pandas": None},
    }


def compare_values(
    lakehouse: Lakehouse, settings: Settings, day: dt.date, out_dir: Path
) -> dict[str, Any]:
    """The largest relative difference and the null mismatches, per derived feature and
    for the score, between regrow's rows and the script's for the same events (at most
    ``COMPARED_ROWS`` of them, a regular sample)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from regrow.catalog import CHAMPION, FEATURES, MODEL_ALIAS, PREDICTIONS, SCORE
    from regrow.catalog import derived_columns as derived_of

    event_id = settings.dataset.event_id
    derived = list(derived_of(settings.features))
    ids = pq.read_table(out_dir / "features.parquet", columns=[event_id]).column(event_id)
    step = max(1, math.ceil(len(ids) / COMPARED_ROWS))
    sample = ids.take(list(range(0, len(ids), step))).cast(pa.string())
    among = pc.field(event_id).isin(sample)  # read only the sampled events' rows

    def files(table: str) -> list[str]:
        return _day_files(lakehouse, table, day)

    out: dict[str, Any] = {"events_compared": len(sample)}
    out["features"] = _differences(
        pq.read_table(
            files(FEATURES), columns=[event_id, *derived], filters=among, partitioning=None
        ),
        pq.read_table(out_dir / "features.parquet", columns=[event_id, *derived], filters=among),
        event_id,
        derived,
    )
    champion = among & (pc.field(MODEL_ALIAS) == CHAMPION)
    out["score"] = _differences(
        pq.read_table(
            files(PREDICTIONS), columns=[event_id, SCORE], filters=champion, partitioning=None
        ),
        pq.read_table(out_dir / "predictions.parquet", columns=[event_id, SCORE], filters=among),
        event_id,
        [SCORE],
    )[SCORE]
    return out


def _differences(ours, theirs, key: str, columns: list[str]) -> dict[str, dict[str, float]]:
    import numpy as np
    import pyarrow as pa

    def keyed(table):  # the script writes the key as large_string, Delta as string
        return table.set_column(
            table.schema.get_field_index(key), key, table[key].cast(pa.string())
        )

    ours, theirs = keyed(ours), keyed(theirs)
    joined = ours.join(theirs, key, join_type="full outer", right_suffix="__pandas")
    out = {}
    for c in columns:
        a = joined.column(c).to_numpy(zero_copy_only=False).astype("float64")
        b = joined.column(f"{c}__pandas").to_numpy(zero_copy_only=False).astype("float64")
        both = ~np.isnan(a) & ~np.isnan(b)
        rel = np.abs(a[both] - b[both]) / np.maximum(1.0, np.abs(a[both]))
        out[c] = {
            "max_rel_diff": float(rel.max()) if rel.size else 0.0,
            "null_mismatches": int((np.isnan(a) != np.isnan(b)).sum()),
            "rows": joined.num_rows,
        }
    return out


def _day_files(lakehouse: Lakehouse, table: str, day: dt.date) -> list[str]:
    """The data files of a table's day partition in its current version."""
    from regrow.catalog import TABLES

    column = TABLES[table].date_column
    uris = lakehouse.delta_table(table).file_uris(partition_filters=[(column, "=", str(day))])
    return [u.removeprefix("file://") for u in uris]


# -------------------------------------------------------------------------- recording
def _suffix(rows: int, several: bool) -> str:
    return f"_{rows}" if several else ""


def _record(measurement: Measurement, cycle: dict, suffix: str) -> None:
    """Add one size's timings, ratios, target, memory, checks and notes."""
    timings = cycle["timings"]
    measurement.timings |= {f"{step}{suffix}": t for step, t in timings.items()}
    medians = {step: statistics.median(t) for step, t in timings.items()}
    rows = cycle["rows"]
    regrow, pandas = medians["regrow_cycle"], medians["pandas_cycle"]
    derived = {
        "regrow_over_pandas": regrow / pandas,
        "pandas_over_regrow": pandas / regrow,
        "regrow_over_pandas_process": regrow / medians["pandas_process"],
        "regrow_rows_per_s": rows / regrow,
        "pandas_rows_per_s": rows / pandas,
    }
    measurement.derived |= {f"{k}{suffix}": v for k, v in derived.items()}
    minimum = round(1 / MAX_REGROW_OVER_PANDAS, 3)
    measurement.targets.append(
        Target(
            f"pandas_over_regrow{suffix}",
            derived["pandas_over_regrow"],
            minimum,
            f"pandas_cycle / regrow_cycle time >= {minimum}, i.e. regrow's day at most "
            f"{MAX_REGROW_OVER_PANDAS}x the hand-written script's (acceptance at 1M rows; "
            f"this run: {rows:,})",
        )
    )
    tree = cycle["memory"]["regrow_cycle"]["process_tree_sum_peak_mib"]
    measurement.targets.append(
        Target(
            f"neg_regrow_peak_rss_gib{suffix}",
            -tree / 1024,
            -MAX_PEAK_RSS_GIB,
            f"regrow's peak RSS (process tree: driver, JVM, Python workers) at most "
            f"{MAX_PEAK_RSS_GIB} GiB, recorded negated (acceptance at 10M rows; this run: "
            f"{rows:,})",
        )
    )
    measurement.memory |= {f"{phase}{suffix}": p for phase, p in cycle["memory"].items()}
    measurement.parameters[f"day{suffix}"] = cycle["day"].isoformat()
    measurement.parameters[f"bronze_events_per_day{suffix}"] = cycle["landed"]
    measurement.parameters[f"prepare{suffix}"] = cycle["prepare"]
    measurement.breakdown[f"rows_written{suffix}"] = cycle["rows_written"]
    measurement.breakdown[f"values{suffix}"] = cycle["values"]
    measurement.breakdown[f"critical_validation_failures{suffix}"] = cycle["failures"]
    for table, counts in cycle["rows_written"].items():
        if counts["pandas"] is not None and counts["regrow"] != counts["pandas"]:
            measurement.notes.append(
                f"{rows:,} rows: {table} differ: regrow {counts['regrow']:,}, "
                f"pandas {counts['pandas']:,}"
            )
    values = cycle["values"]
    for column, diff in {**values["features"], "score": values["score"]}.items():
        if diff["max_rel_diff"] > TOLERANCE or diff["null_mismatches"]:
            measurement.notes.append(
                f"{rows:,} rows: {column} differs between regrow and pandas: max relative "
                f"difference {diff['max_rel_diff']:.3g}, {diff['null_mismatches']} null "
                "mismatches"
            )
    if cycle["failures"]:
        measurement.notes.append(
            f"{rows:,} rows: critical validation failures (the day would be blocked): "
            + "; ".join(cycle["failures"])
        )


def _record_scaling(measurement: Measurement, small: dict, large: dict, tail: str = "") -> None:
    """The largest size's time over the smallest's, against the size ratio (names end in
    ``tail``)."""
    size_ratio = large["rows"] / small["rows"]
    allowed = MAX_TIME_OVER_SIZE_RATIO * size_ratio
    for side in ("regrow", "pandas"):
        t_small = statistics.median(small["timings"][f"{side}_cycle"])
        t_large = statistics.median(large["timings"][f"{side}_cycle"])
        name = f"{side}_time_{large['rows']}_over_{small['rows']}{tail}"
        measurement.derived[name] = t_large / t_small
    ratio = measurement.derived[f"regrow_time_{large['rows']}_over_{small['rows']}{tail}"]
    measurement.targets.append(
        Target(
            f"regrow_time_{small['rows']}_over_{large['rows']}{tail}",
            1 / ratio,
            round(1 / allowed, 4),
            f"regrow_cycle at {large['rows']:,} rows at most {allowed:g}x its time at "
            f"{small['rows']:,} rows ({MAX_TIME_OVER_SIZE_RATIO}x the size ratio), recorded "
            "inverted",
        )
    )


# ---------------------------------------------------------------------------- memory
class TreeRss:
    """Peak of the summed RSS (MiB) of this process and all its descendants (the Spark JVM
    and its Python workers), sampled every ``interval`` seconds in a thread while the
    ``with`` block runs. Linux only (0 elsewhere)."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        page_mib = os.sysconf("SC_PAGE_SIZE") / 2**20
        while True:
            self.peak_mib = max(self.peak_mib, _tree_pages(os.getpid()) * page_mib)
            if self._stop.wait(self.interval):
                return


def _tree_pages(root: int) -> int:
    """Resident pages of ``root`` and its descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier += children
    pages = 0
    for pid in tree:
        try:
            pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return pages


# ---------------------------------------------------------------------- task overhead
TRIVIAL_JOB = '''"""An empty Spark job: the session regrow's jobs build, one row counted, stopped."""
import sys

from regrow.orchestration.spark import get_spark
from regrow.settings import load_settings

spark_settings = load_settings(sys.argv[1]).spark
if len(sys.argv) > 2:  # a Spark Connect server's URL
    spark_settings = spark_settings.model_copy(update={"remote": sys.argv[2]})
spark = get_spark(spark_settings)
assert spark.range(1).count() == 1
spark.stop()
'''


@benchmark(
    "task_overhead",
    "an empty Spark job as a DAG task runs it: spark-submit (a JVM per task) vs a warm "
    "Spark Connect server",
)
def run_task_overhead(ctx: BenchContext) -> Measurement:
    import pyspark

    from regrow.orchestration import connect
    from regrow.orchestration.dags import spark_submit_conf
    from regrow.settings import load_settings

    root = ctx.work_dir / "task_overhead"
    root.mkdir(parents=True, exist_ok=True)
    params = write_params(root)
    settings = load_settings(params)
    job = root / "empty_job.py"
    job.write_text(TRIVIAL_JOB)
    spark_submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    submit = [
        str(spark_submit), "--master", settings.spark.master, "--name", "regrow_task_overhead",
        *(arg for key, value in spark_submit_conf().items() for arg in ("--conf", f"{key}={value}")),
        str(job), str(params),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "PYSPARK_GATEWAY_PORT")}

    def run_job(command: list[str]) -> None:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")

    reps = ctx.repetitions
    timings = {"task_overhead_spark_submit": repeat(lambda: run_job(submit), reps)}

    port = connect.free_port()
    started = time.perf_counter()
    with connect.running(settings, port) as server:
        server_start_s = time.perf_counter() - started
        client = [sys.executable, str(job), str(params), server.url]
        timings["task_overhead_connect"] = repeat(lambda: run_job(client), reps)
    spark = ctx.spark
    timings["ref_job_in_warm_session"] = repeat(lambda: spark.range(1).count(), reps)
    timings["ref_python_start_and_imports"] = repeat(
        lambda: run_job([sys.executable, "-c", "import pyspark.sql, regrow.settings"]), reps
    )

    medians = {step: statistics.median(t) for step, t in timings.items()}
    submit_s, connect_s = medians["task_overhead_spark_submit"], medians["task_overhead_connect"]
    return Measurement(
        parameters={
            "spark_master": settings.spark.master,
            "driver_memory": settings.spark.driver_memory,
            "connect_port": port,
            "connect_server_start_s": server_start_s,
            "repetitions": reps,
            "warmup": 1,
            "cores": os.cpu_count(),
            "load_average_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        timings=timings,
        derived={
            "spark_submit_over_connect": submit_s / connect_s,
            "spark_submit_minus_connect_s": submit_s - connect_s,
        },
        notes=[
            "each step is a fresh process running the same empty job (bench writes it: "
            "regrow's get_spark, range(1).count(), stop), as a DAG task's Spark job runs: "
            "spark_submit through pyspark's spark-submit with the DAG's conf (a JVM started "
            "and stopped per task), connect as `python job.py` on a Spark Connect server "
            "started once by regrow.orchestration.connect (its start is a parameter)",
            "Airflow's own per-task cost (scheduling, the task runner process) is not in "
            "these numbers; ref_python_start_and_imports is the share of the interpreter "
            "start and imports in both",
        ],
    )
