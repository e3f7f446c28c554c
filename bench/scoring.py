"""scoring: rows per second that ``regrow.model.scoring.score_frame`` scores, against raw
``xgboost.Booster.inplace_predict`` on the same rows, in the same run.

Acceptance: scoring throughput (Spark overhead included) is at least 0.8x the throughput of
raw ``inplace_predict`` on the same ``ctx.rows`` rows.

Data (untimed): one day of silver.features made the way the features job makes it. The
simulator (scenario ``stable``) draws two days of ``ctx.rows`` events over
``ctx.rows / EVENTS_PER_CARD`` cards; ``regrow.data.features.compute_features`` computes the
second day's features (the first is its look-back) and ``Lakehouse.write`` writes them as
the day's ``silver.features`` partition (a real Delta table under the scratch folder, the
file layout the job's shuffle gives). The model is a champion as the retrain makes it:
a :class:`~regrow.trainset.Transform` fitted on ``TRAIN_ROWS`` labelled rows of a smaller
simulation at the same density, and ``regrow.model.training.train`` with the ``train`` section of
params.yaml, given no validation rows so that it keeps all ``train.num_boost_round`` trees.
It is wrapped in a :class:`~regrow.scoring.Scorer` with a hand-made registry ``Version``:
no MLflow (loading the champion is not part of the throughput).

Timed, each repetition running every step once, in this order (interleaved: a busy
neighbour slows all steps alike rather than one):

- ``raw_inplace_predict``: ``booster.inplace_predict(X)``, X the same rows already
  transformed into one float32 matrix, XGBoost on all cores (``nthread`` 0): the fairest
  raw number;
- ``raw_inplace_predict_1_thread``: the same on one thread, for context;
- ``score_to_delta``: what ``regrow score`` runs for a day, without the registry:
  ``regrow.model.scoring.write_predictions``, i.e. ``Lakehouse.derive`` reading the day's
  silver.features row groups, scoring them and writing the day's ``gold.predictions``
  partition (overwrite) in one pass of Spark tasks, until the Delta commit.

``ref_*`` steps explain the numbers and are not judged:

- ``ref_score_to_delta_zstd``: ``score_to_delta`` on a copy of the day in a lakehouse with
  ``compression: zstd`` (smaller files, slower to decode than the default lz4);
- ``ref_score_frame_to_delta``: the same as a DataFrame pipeline: ``Lakehouse.read`` ->
  ``score_frame`` (``mapInArrow``) -> ``Lakehouse.write``. With the delta-rs engine the
  rows cross JVM -> Python -> JVM -> Python on the way;
- ``ref_score_frame_noop``: ``Lakehouse.read`` -> ``score_frame`` -> Spark's ``noop`` sink;
- ``ref_spark_read_noop``: Spark reading the columns scoring reads, nothing else;
- ``ref_spark_python_roundtrip``: the same columns through a ``mapInArrow`` that hands its
  batches back unchanged: Spark's JVM -> Arrow -> Python -> JVM cost with no work done.

With profiling on, ``regrow.model.scoring.score_batches`` also runs in this process on one core,
on the same rows cut in Arrow batches of ``Lakehouse.derive``'s size, timing its transform
(``Transform.matrix``), its ``inplace_predict`` and the rest (the output batch).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import BENCH_DIR, BenchContext, Measurement, PeakRss, Target, benchmark, repeat

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

    from regrow.model.scoring import Scorer
    from regrow.settings import Settings
    from regrow.storage.lakehouse import Lakehouse

REPO = BENCH_DIR.parent
MIN_RATIO = 0.8  # scoring throughput / raw inplace_predict throughput
# Events per card per day. The default simulator (2,000 events over 3,000 cards) leaves the
# look-back windows nearly empty; 3,000 cards at 1M events a day make the window
# aggregation itself take minutes. 20 a day gives every window something to aggregate.
EVENTS_PER_CARD = 20
TRAIN_ROWS = 80_000
SCORING_RUN = "bench-scoring"  # the run id on every prediction row


@benchmark(
    "scoring",
    "score_frame (Delta read -> mapInArrow -> gold.predictions) vs raw Booster.inplace_predict",
)
def run(ctx: BenchContext) -> Measurement:
    import numpy as np

    from regrow.catalog import EVENT_DATE, FEATURES, PREDICTIONS, key_columns
    from regrow.model.scoring import score_frame, write_predictions
    from regrow.settings import load_settings
    from regrow.storage.lakehouse import Lakehouse
    from regrow.storage.reader import _BATCH_ROWS

    spark = ctx.spark
    rss = PeakRss(jvm_pid=jvm_pid(spark))
    settings = load_settings(REPO / "params.yaml")
    dataset, cfg = settings.dataset, settings.score
    root = ctx.work_dir / "scoring"
    # params.yaml's lakehouse section (its compression), rooted in the scratch folder.
    lakehouse = Lakehouse(settings.lakehouse.model_copy(update={"root": str(root)}), str(root))

    rss.start()
    started = time.perf_counter()
    day = write_features_day(spark, settings, lakehouse, ctx.rows)
    prepare_s = {"simulate_and_write_features": time.perf_counter() - started}
    started = time.perf_counter()
    scorer, train_facts = train_champion(spark, settings)
    prepare_s["train_model"] = time.perf_counter() - started
    rss.stop("prepare")

    version = lakehouse.table_version(FEATURES)
    day_rows = lakehouse.to_arrow(FEATURES, version, {EVENT_DATE: day})
    rows = day_rows.num_rows
    if rows != ctx.rows:
        raise RuntimeError(f"{FEATURES} {EVENT_DATE}={day} has {rows} rows, expected {ctx.rows}")
    # The same day in a zstd lakehouse (Spark reads it back from the first and writes it),
    # for ref_score_to_delta_zstd: what the codec choice is worth.
    zstd_root = ctx.work_dir / "scoring-zstd"
    zstd = Lakehouse(
        settings.lakehouse.model_copy(update={"root": str(zstd_root), "compression": "zstd"}),
        str(zstd_root),
    )
    zstd.write(
        lakehouse.read(spark, FEATURES, version=version, partitions={EVENT_DATE: day}),
        FEATURES,
        partition_by=[EVENT_DATE],
    )
    zstd_version = zstd.table_version(FEATURES)

    model = scorer.model
    X = model.inputs(day_rows.select(model.features).to_pandas()).to_numpy(dtype=np.float32)
    all_cores, one_thread = _booster(model.booster, 0), _booster(model.booster, 1)
    needed = sorted({*key_columns(dataset), EVENT_DATE, *model.features})

    def features() -> DataFrame:
        return lakehouse.read(spark, FEATURES, version=version, partitions={EVENT_DATE: day})

    def scored() -> DataFrame:
        return score_frame(features(), [scorer], dataset, cfg, version, SCORING_RUN)

    def score_to_delta() -> None:
        write_predictions(
            spark, lakehouse, lakehouse.spark_schema(FEATURES, version), [scorer], settings,
            day, version, SCORING_RUN,
        )  # fmt: skip

    def score_to_delta_zstd() -> None:
        write_predictions(
            spark, zstd, zstd.spark_schema(FEATURES, zstd_version), [scorer], settings, day,
            zstd_version, SCORING_RUN,
        )  # fmt: skip

    def score_frame_to_delta() -> None:
        lakehouse.write(
            scored(), PREDICTIONS, "overwrite", partition_by=[EVENT_DATE],
            partition={EVENT_DATE: day},
        )  # fmt: skip

    def python_roundtrip() -> None:
        inputs = features().select(*needed)
        _noop(inputs.mapInArrow(_passthrough, inputs.schema))

    steps: dict[str, Callable[[], Any]] = {
        "raw_inplace_predict": lambda: all_cores.inplace_predict(X),
        "raw_inplace_predict_1_thread": lambda: one_thread.inplace_predict(X),
        "score_to_delta": score_to_delta,
        "ref_score_to_delta_zstd": score_to_delta_zstd,
        "ref_score_frame_to_delta": score_frame_to_delta,
        "ref_score_frame_noop": lambda: _noop(scored()),
        "ref_spark_read_noop": lambda: _noop(features().select(*needed)),
        "ref_spark_python_roundtrip": python_roundtrip,
    }
    batch = _BATCH_ROWS  # the Arrow batch rows of a derive task

    rss.start()
    timings = interleaved(steps, ctx.repetitions)
    rss.stop("timed_steps")

    # Untimed correctness: one row per event, each with the raw booster's score.
    check_scores(
        lakehouse.to_arrow(PREDICTIONS, partitions={EVENT_DATE: day}),
        day_rows.column(dataset.event_id),
        all_cores.inplace_predict(X),
        dataset.event_id,
    )

    medians = {step: statistics.median(t) for step, t in timings.items()}
    raw, raw_1 = medians["raw_inplace_predict"], medians["raw_inplace_predict_1_thread"]
    derived: dict[str, float] = {f"{s}_rows_per_s": rows / m for s, m in medians.items()}
    derived["score_to_delta_over_raw"] = raw / medians["score_to_delta"]
    derived["score_to_delta_over_raw_1_thread"] = raw_1 / medians["score_to_delta"]
    derived["ref_score_to_delta_zstd_over_raw"] = raw / medians["ref_score_to_delta_zstd"]
    derived["ref_score_frame_to_delta_over_raw"] = raw / medians["ref_score_frame_to_delta"]
    derived["ref_score_frame_noop_over_raw"] = raw / medians["ref_score_frame_noop"]
    derived["raw_all_cores_speedup_over_1_thread"] = raw_1 / raw
    derived["python_roundtrip_over_raw_time"] = medians["ref_spark_python_roundtrip"] / raw

    breakdown: dict[str, Any] = {
        "prepare_s": prepare_s,
        "features_layout": _layout(lakehouse, FEATURES, EVENT_DATE, day),
        "spark_read_partitions": features().rdd.getNumPartitions(),
        "predictions_layout": _layout(lakehouse, PREDICTIONS, EVENT_DATE, day),
    }
    if ctx.profile:
        breakdown["score_batches_in_driver"] = profile_batches(
            scorer, day_rows.select(needed), scored().schema, dataset, cfg, batch, version
        )
    return Measurement(
        parameters={
            "rows": rows,
            "model_inputs": len(model.features),
            "features_columns_read": len(needed),
            "trees": model.trees,
            "train_params": dict(settings.train.params),
            **train_facts,
            "score_threshold": cfg.threshold,
            "score_nthread": cfg.nthread,
            "raw_nthread": "0 (all cores) and 1",
            "derive_batch_rows": batch,
            "spark_master": spark.sparkContext.master,
            "spark_default_parallelism": spark.sparkContext.defaultParallelism,
            "cores": os.cpu_count(),
            "lakehouse_engine": lakehouse.engine(spark),
            "lakehouse_compression": lakehouse.settings.compression,
            "scorers": 1,
            "events_per_card_per_day": EVENTS_PER_CARD,
            "repetitions": ctx.repetitions,
            "warmup": 1,
            "load_average_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        timings=timings,
        derived=derived,
        targets=[
            Target(
                "score_to_delta_over_raw",
                derived["score_to_delta_over_raw"],
                MIN_RATIO,
                "rows/s of Delta read -> score_frame -> gold.predictions write over rows/s of "
                "raw Booster.inplace_predict on all cores, same rows, same run",
            )
        ],
        memory=rss.phases,
        breakdown=breakdown,
        notes=[
            "no MLflow: the Scorer's registry Version is made by hand; score_day's registry "
            "load, lineage record and gold.predictions suite are not timed",
            "one scorer (the champion); with a challenger in shadow the job predicts twice",
            "raw X is the already transformed float32 matrix (its transform is not timed); "
            "the Spark path reads, transforms and writes as well as predicting",
            "the Spark path runs spark.default.parallelism tasks with score.nthread XGBoost "
            "threads each; the raw baseline uses XGBoost's own threads on the same cores",
            "steps are interleaved per repetition, so that other load on the machine hits "
            "every step alike; the ratios are steadier than the absolute times",
            "score_to_delta's rows never enter the JVM (delta-rs engine); the ref_score_frame "
            "steps pay Spark's JVM -> Python -> JVM transfer (ref_spark_python_roundtrip) "
            "on top of the same work",
        ],
    )


# ------------------------------------------------------------------------------ data
def write_features_day(
    spark: SparkSession, settings: Settings, lakehouse: Lakehouse, rows: int
) -> dt.date:
    """Simulate two days of ``rows`` events and write the second day's features to the
    silver.features partition; returns the day."""
    from pyspark.sql import functions as F

    from regrow.catalog import EVENT_DATE, FEATURES, RUN_ID, SOURCE_VERSION
    from regrow.data.features import compute_features

    sim = _simulation(settings, rows)
    events, _ = simulated_events(settings, sim, days=2)
    day = sim.start_date + dt.timedelta(days=1)
    frame = _spark_frame(spark, events)
    features = compute_features(frame, settings.dataset, settings.features, day).select(
        "*", F.lit(0).cast("long").alias(SOURCE_VERSION), F.lit("bench-features").alias(RUN_ID)
    )
    lakehouse.write(
        features, FEATURES, "overwrite", partition_by=[EVENT_DATE], partition={EVENT_DATE: day}
    )
    frame.unpersist()
    return day


def train_champion(spark: SparkSession, settings: Settings) -> tuple[Scorer, dict[str, Any]]:
    """A model of the retrain's making on ``TRAIN_ROWS`` labelled feature rows, as the
    champion ``Scorer`` (its registry ``Version`` made by hand)."""
    from regrow.catalog import CHAMPION, feature_columns
    from regrow.data.features import compute_features
    from regrow.data.trainset import TRAIN, VALIDATION
    from regrow.data.transform import Transform
    from regrow.model.registry import Version
    from regrow.model.scoring import Scorer
    from regrow.model.training import train

    dataset = settings.dataset
    sim = _simulation(settings, TRAIN_ROWS)
    events, labels = simulated_events(settings, sim, days=2)
    day = sim.start_date + dt.timedelta(days=1)
    frame = _spark_frame(spark, events)
    rows = compute_features(frame, dataset, settings.features, day).toPandas()
    frame.unpersist()
    rows = rows.merge(labels, on=dataset.event_id, how="inner")
    numeric = [*dataset.numeric_features, *dataset.boolean_features]
    numeric += [c for c in feature_columns(dataset, settings.features) if c not in dataset.features]
    transform = Transform.fit(
        rows, numeric, list(dataset.categorical_features), settings.split.rare_category_min_count
    )
    # No validation rows: no early stopping, every one of train.num_boost_round trees kept.
    splits = {TRAIN: rows, VALIDATION: rows.iloc[:0]}
    result = train(splits, transform, dataset, settings.train, day + dt.timedelta(days=1))
    name = settings.mlflow.registered_model or dataset.name
    # Not an MLflow run: the id only fills the rows' model_run_id.
    version = Version(name, "1", "bench-no-mlflow", [CHAMPION], {}, "bench (not registered)")
    positives = int((rows[dataset.label] == dataset.positive_label).sum())
    facts = {"train_rows": len(rows), "train_positives": positives}
    return Scorer(CHAMPION, version, result.model), facts


def simulated_events(settings: Settings, sim, days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Days ``0..days-1`` of the simulator as bronze.events rows (with ``event_date``), and
    their true labels (event id, label) apart."""
    import pandas as pd

    from regrow.catalog import EVENT_DATE
    from regrow.data.simulate import TRUTH_LABEL, TRUTH_LABEL_TIME, simulate_day

    dataset = settings.dataset
    events = pd.concat(
        [simulate_day(dataset, sim, i) for i in range(days)], ignore_index=True
    ).drop(columns=[TRUTH_LABEL_TIME])
    events[EVENT_DATE] = events[dataset.event_timestamp].dt.date
    labels = events[[dataset.event_id, TRUTH_LABEL]].rename(columns={TRUTH_LABEL: dataset.label})
    return events.drop(columns=[TRUTH_LABEL]), labels


def _simulation(settings: Settings, events_per_day: int):
    return settings.simulator.model_copy(
        update={
            "scenario": "stable",
            "events_per_day": events_per_day,
            "n_entities": max(1, math.ceil(events_per_day / EVENTS_PER_CARD)),
        }
    )


def _spark_frame(spark: SparkSession, events: pd.DataFrame) -> DataFrame:
    """Local rows as a checkpointed DataFrame (otherwise every later task ships them)."""
    import pyarrow as pa

    table = pa.Table.from_pandas(events, preserve_index=False).replace_schema_metadata(None)
    return spark.createDataFrame(table).localCheckpoint(eager=True)


# ------------------------------------------------------------------------------ timing
def interleaved(
    steps: dict[str, Callable[[], Any]], repetitions: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per repetition of every step, the steps taking turns within a repetition;
    ``warmup`` untimed rounds first."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    timings: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repetitions):
        for name, step in steps.items():
            timings[name] += repeat(step, 1, warmup=0)
    return timings


def _noop(df: DataFrame) -> None:
    df.write.format("noop").mode("overwrite").save()


def _passthrough(batches):
    """A mapInArrow function that hands its input back: Spark's JVM -> Python -> JVM cost."""
    yield from batches


def _booster(booster, nthread: int):
    """A copy of ``booster`` predicting on ``nthread`` threads (0: all cores)."""
    import xgboost as xgb

    copy = xgb.Booster()
    copy.load_model(bytearray(booster.save_raw("ubj")))
    copy.set_param({"nthread": nthread})
    return copy


def check_scores(written: pa.Table, ids: pa.ChunkedArray, raw: np.ndarray, event_id: str) -> None:
    """Every event scored once, with the score the raw booster gives its row."""
    import numpy as np
    import pyarrow as pa

    from regrow.catalog import SCORE

    expected = pa.table({event_id: ids, "raw": raw.astype(np.float64)})
    joined = written.select([event_id, SCORE]).join(expected, event_id, join_type="full outer")
    if written.num_rows != len(ids) or joined.num_rows != len(ids):
        raise RuntimeError(
            f"gold.predictions holds {written.num_rows} rows for {len(ids)} events, "
            f"expected one per event"
        )
    diff = np.abs(joined[SCORE].to_numpy() - joined["raw"].to_numpy())
    if not np.all(diff <= 1e-6):
        raise RuntimeError(f"gold.predictions scores differ from the raw booster's by {diff.max()}")


# --------------------------------------------------------------------------- breakdown
def profile_batches(
    scorer: Scorer, rows: pa.Table, schema, dataset, cfg, batch: int, version: int
) -> dict[str, Any]:
    """``regrow.model.scoring.score_batches`` in this process, on one core as in a Spark task, on
    the rows scoring reads cut in Arrow batches of ``batch`` rows: its seconds in the
    transform (``Transform.matrix``), in ``inplace_predict`` and in the rest (the output
    batch). Median of 3."""
    from pyspark.sql.pandas.types import to_arrow_schema

    from regrow.catalog import key_columns
    from regrow.model.scoring import _payload, score_batches

    spent = {"transform": 0.0, "predict": 0.0}
    model = _TimedModel(scorer.model, _booster(scorer.model.booster, cfg.nthread), spent)
    models = [(_payload([scorer], cfg.nthread)[0], model)]
    keys = key_columns(dataset)
    arrow_schema = to_arrow_schema(schema, timezone="UTC")
    batches = rows.combine_chunks().to_batches(max_chunksize=batch)
    runs = []
    for _ in range(3):
        spent.update(transform=0.0, predict=0.0)
        started = time.perf_counter()
        for _ in score_batches(
            iter(batches), models, keys, cfg.threshold, version, SCORING_RUN, arrow_schema
        ):
            pass
        total = time.perf_counter() - started
        runs.append({**spent, "rest": total - sum(spent.values()), "total": total})
    run = sorted(runs, key=lambda r: r["total"])[1]
    return {
        "batch_rows": batch,
        "batches": len(batches),
        "xgboost_nthread": cfg.nthread,
        "score_batches_s": run["total"],
        "score_batches_rows_per_s": rows.num_rows / run["total"],
        "steps_s": {k: v for k, v in run.items() if k != "total"},
        "share": {k: v / run["total"] for k, v in run.items() if k != "total"},
    }


class _TimedModel:
    """What ``score_batches`` uses of a Model (``transform.matrix``,
    ``booster.inplace_predict``), adding the seconds spent in each to ``spent``."""

    def __init__(self, model, booster, spent: dict[str, float]) -> None:
        self.model, self.transform, self.booster, self.spent = model, self, self, spent
        self._booster = booster

    def matrix(self, batch):
        started = time.perf_counter()
        try:
            return self.model.transform.matrix(batch)
        finally:
            self.spent["transform"] += time.perf_counter() - started

    def inplace_predict(self, inputs):
        started = time.perf_counter()
        try:
            return self._booster.inplace_predict(inputs)
        finally:
            self.spent["predict"] += time.perf_counter() - started


# ----------------------------------------------------------------------------- helpers
def _layout(lakehouse: Lakehouse, table: str, column: str, day: dt.date) -> dict[str, Any]:
    """The day's data files in the table's current version: rows and row groups each."""
    import pyarrow.parquet as pq

    uris = lakehouse.delta_table(table).file_uris(partition_filters=[(column, "=", str(day))])
    files = [Path(u.removeprefix("file://")) for u in uris]
    meta = [pq.ParquetFile(p).metadata for p in files]
    return {
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "rows_per_file": [m.num_rows for m in meta],
        "row_groups_per_file": [m.num_row_groups for m in meta],
    }


def jvm_pid(spark) -> int | None:
    try:
        return int(spark._jvm.java.lang.ProcessHandle.current().pid())
    except Exception:  # noqa: BLE001  (py4j errors; Spark Connect has no JVM here)
        return None
