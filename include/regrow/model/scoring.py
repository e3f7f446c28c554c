"""Batch scoring: a day of silver.features becomes its partition of gold.predictions.

The champion (registry alias ``champion``) scores every event of the day; the challenger,
if one is registered and ``score.shadow`` is on, scores the same events as alias
``shadow``. Each scorer writes its own rows, so a shadow row never changes a champion
decision. A row says which model made it (name, version, alias, MLflow run) and what it
read (the silver.features version); :mod:`regrow.model.lineage` follows it further back.

Scoring runs in Spark with Arrow batches (``mapInArrow``): the models travel to the
executors once, as a broadcast of their UBJSON bytes and transform, and each Python worker
loads them once (not per batch). Each batch goes through the transform the model was
trained with (on Arrow, without pandas), then ``Booster.inplace_predict``. A day is read,
scored and written in one pass of Spark tasks (``Lakehouse.derive``), so that with the
delta-rs engine the rows never cross between the JVM and Python.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from regrow.catalog import (
    ALIASES,
    CHALLENGER,
    CHAMPION,
    DECISION,
    EVENT_DATE,
    FEATURES,
    MODEL_ALIAS,
    PREDICTIONS,
    SCORE,
    SHADOW,
    key_columns,
    prediction_columns,
)
from regrow.data.transform import Transform
from regrow.model.lineage import record_versions
from regrow.model.training import Model
from regrow.settings import DatasetSettings, ScoreSettings, Settings
from regrow.storage import decode_dictionaries, is_connect
from regrow.validation import validate_day

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from regrow.model.registry import Registry, Version
    from regrow.stage import StageContext
    from regrow.storage.lakehouse import CommitInfo, Lakehouse

logger = logging.getLogger(__name__)


class ScoringError(RuntimeError):
    """A day cannot be scored: no champion, or features the model cannot read."""


@dataclass(frozen=True)
class Scorer:
    """A registered model version as it scores: its alias in gold.predictions and model."""

    alias: str
    version: Version
    model: Model


def load_scorers(registry: Registry, shadow: bool = True) -> list[Scorer]:
    """The champion, then (if ``shadow`` and one exists that is not the champion) the
    challenger, each loaded once.

    Raises:
        ScoringError: no version has the alias ``champion``.
    """
    champion = registry.alias(CHAMPION)
    if champion is None:
        raise ScoringError(
            f"registered model {registry.name} at {registry.uri} has no {CHAMPION}: nothing "
            f"to score with. Train and gate a model first (regrow retrain), or make a version "
            f"the champion (regrow promote VERSION --force --reason ...)"
        )
    scorers = [Scorer(CHAMPION, champion, registry.load(champion.version))]
    challenger = registry.alias(CHALLENGER) if shadow else None
    if challenger is not None and challenger.version != champion.version:
        scorers.append(Scorer(SHADOW, challenger, registry.load(challenger.version)))
    return scorers


def check_inputs(schema: StructType, scorers: Sequence[Scorer], where: str) -> None:
    """Stop before scoring when a model cannot read these columns.

    Each model needs every column its transform was fitted on (its MLflow signature's
    inputs); a numeric one must still be numeric or boolean.

    Raises:
        ScoringError: naming the missing columns and those of another type.
    """
    from pyspark.sql.types import BooleanType, NumericType

    types = {f.name: f.dataType for f in schema.fields}
    problems = []
    for s in scorers:
        missing = [c for c in s.model.features if c not in types]
        retyped = [
            f"{c} is {types[c].simpleString()}"
            for c in s.model.transform.numeric
            if c in types and not isinstance(types[c], NumericType | BooleanType)
        ]
        if missing or retyped:
            detail = "; ".join(
                ([f"missing columns {missing}"] if missing else [])
                + ([f"not numeric any more: {', '.join(retyped)}"] if retyped else [])
            )
            problems.append(f"{s.alias} {s.version.name} v{s.version.version}: {detail}")
    if problems:
        raise ScoringError(
            f"{where} does not match the model signature ({'; '.join(problems)}). Rebuild the "
            "features with the contract the model was trained on, or retrain on the new one"
        )


def _payload(scorers: Sequence[Scorer], nthread: int) -> list[dict[str, Any]]:
    """What the executors need of each model: bytes and plain values, no MLflow."""
    return [
        {
            "alias": s.alias,
            "name": s.version.name,
            "version": int(s.version.version),
            "run_id": s.version.run_id,
            "booster": bytes(s.model.booster.save_raw("ubj")),
            "transform": s.model.transform.to_dict(),
            "nthread": nthread,
        }
        for s in scorers
    ]


@dataclass(frozen=True)
class _Inline:
    """A value shipped inside a task's function, read like a Broadcast (``.value``)."""

    value: Any


# A Python worker keeps the models of the broadcasts it has seen: loaded once per worker
# (Spark reuses workers between tasks), not once per batch.
_LOADED: dict[str, list[tuple[dict[str, Any], Model]]] = {}


def _models(key: str, broadcast) -> list[tuple[dict[str, Any], Model]]:
    """The broadcast's models, loaded on the first call in this worker (``key`` names the
    broadcast: a worker-side Broadcast has no id)."""
    if key not in _LOADED:
        import xgboost as xgb

        loaded = []
        for spec in broadcast.value:
            booster = xgb.Booster()
            booster.load_model(bytearray(spec["booster"]))
            booster.set_param({"nthread": spec["nthread"]})
            loaded.append((spec, Model(booster, Transform.from_dict(spec["transform"]))))
        _LOADED.clear()
        _LOADED[key] = loaded
    return _LOADED[key]


def score_batches(
    batches: Iterator[pa.RecordBatch],
    models: list[tuple[dict[str, Any], Model]],
    keys: list[str],
    threshold: float,
    source_version: int,
    run_id: str,
    schema: pa.Schema,
) -> Iterator[pa.RecordBatch]:
    """Prediction rows of feature batches: for each batch, one batch per model."""
    import numpy as np
    import pyarrow as pa

    for batch in batches:
        if batch.num_rows == 0:
            continue
        n = batch.num_rows
        for spec, model in models:
            scores = model.booster.inplace_predict(model.transform.matrix(batch))
            scores = scores.astype(np.float64)
            columns = [batch.column(k).cast(schema.field(k).type) for k in keys] + [
                pa.array(scores),
                pa.array(scores >= threshold),
                pa.repeat(pa.scalar(threshold, pa.float64()), n),
                _repeated(spec["name"], n),
                pa.repeat(pa.scalar(spec["version"], pa.int64()), n),
                _repeated(spec["alias"], n),
                _repeated(spec["run_id"], n),
                batch.column(EVENT_DATE),
                pa.repeat(pa.scalar(source_version, pa.int64()), n),
                _repeated(run_id, n),
            ]
            yield pa.RecordBatch.from_arrays(columns, names=schema.names)


def _repeated(text: str | None, n: int) -> pa.Array:
    """``n`` rows of ``text`` as a one-entry dictionary array. Written plainly, a run id
    repeated on 500k rows is 16 MB to copy, compress and take statistics of; as a
    dictionary the file writer stores one value and its indices (for the four such
    columns, about 0.03 s less per 500k-row scoring task). Readers get a plain string
    column either way."""
    import numpy as np
    import pyarrow as pa

    if text is None:
        return pa.nulls(n, pa.string())
    indices = pa.array(np.zeros(n, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(indices, pa.array([text], pa.string()))


@dataclass(frozen=True)
class ScoringPass:
    """What scoring runs in Spark: the features ``columns`` it reads, the Arrow
    ``function`` (the models broadcast inside it) and the Spark ``schema`` of its rows."""

    columns: list[str]
    function: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]
    schema: StructType


def scoring_pass(
    spark: SparkSession,
    features: StructType,
    scorers: Sequence[Scorer],
    dataset: DatasetSettings,
    cfg: ScoreSettings,
    source_version: int,
    run_id: str,
) -> ScoringPass:
    """The scoring of silver.features rows of schema ``features``: one prediction row per
    event and scorer.

    Args:
        features: the silver.features schema; must pass :func:`check_inputs`.
        source_version: the silver.features version read (on every row).
        run_id: the scoring run (on every row).
    """
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructField, StructType

    keys = key_columns(dataset)
    by_name = {f.name: f for f in features.fields}
    fields = [by_name[k] for k in keys]
    fields += [
        # Nullable: a version registered without an MLflow run has no run id.
        StructField(c, _spark_type(t), nullable=True)
        for c, t in prediction_columns(dataset).items()
        if c not in keys
    ]
    schema = StructType(fields)
    arrow_schema = to_arrow_schema(schema, timezone=spark.conf.get("spark.sql.session.timeZone"))
    payload = _payload(scorers, cfg.nthread)
    # Spark Connect has no broadcasts: there the models travel inside the function itself
    # (pickled once per task, a few MB at most).
    broadcast = _Inline(payload) if is_connect(spark) else spark.sparkContext.broadcast(payload)
    key = uuid.uuid4().hex
    threshold = float(cfg.threshold)

    def predict(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        yield from score_batches(
            batches, _models(key, broadcast), keys, threshold, source_version, run_id, arrow_schema
        )

    needed = sorted({*keys, EVENT_DATE, *(c for s in scorers for c in s.model.features)})
    return ScoringPass(needed, predict, schema)


def score_frame(
    features: DataFrame,
    scorers: Sequence[Scorer],
    dataset: DatasetSettings,
    cfg: ScoreSettings,
    source_version: int,
    run_id: str,
) -> DataFrame:
    """Prediction rows of silver.features rows as a DataFrame (see :func:`scoring_pass`);
    :func:`write_predictions` writes a day without making one."""
    scoring = scoring_pass(
        features.sparkSession, features.schema, scorers, dataset, cfg, source_version, run_id
    )

    function = scoring.function
    return features.select(*scoring.columns).mapInArrow(
        lambda batches: decode_dictionaries(function(batches)), scoring.schema
    )


def write_predictions(
    spark: SparkSession,
    lakehouse: Lakehouse,
    features: StructType,
    scorers: Sequence[Scorer],
    settings: Settings,
    day: dt.date,
    source_version: int,
    run_id: str,
) -> CommitInfo:
    """Score ``day``'s silver.features (at ``source_version``, of schema ``features``) and
    replace the day's gold.predictions partition with the rows, in one pass
    (:meth:`~regrow.lakehouse.Lakehouse.derive`)."""
    scoring = scoring_pass(
        spark, features, scorers, settings.dataset, settings.score, source_version, run_id
    )
    return lakehouse.derive(
        spark,
        FEATURES,
        PREDICTIONS,
        scoring.function,
        scoring.schema,
        scoring.columns,
        version=source_version,
        partitions={EVENT_DATE: day},
        mode="overwrite",
        partition_by=[EVENT_DATE],
        partition={EVENT_DATE: day},
    )


def _spark_type(logical: str):
    from pyspark.sql import types as T

    return {"double": T.DoubleType(), "boolean": T.BooleanType(), "string": T.StringType(),
            "long": T.LongType(), "date": T.DateType()}[logical]  # fmt: skip


@dataclass(frozen=True)
class ScoreReport:
    day: str
    events: int
    rows: int
    models: dict[str, str]  # alias -> version
    flagged: int  # champion rows whose decision is True
    threshold: float
    source_version: int
    version: int

    def as_dict(self) -> dict:
        return asdict(self)


def score_day(ctx: StageContext, day: dt.date) -> ScoreReport:
    """Score ``day``'s silver.features with the champion (and the challenger in shadow),
    replace the day's gold.predictions partition, record the models' lineage, then run
    the gold.predictions suite on it.

    Scoring a day again replaces its partition with the same rows (for the same models).

    Raises:
        MissingPartitionError: silver.features has no partition for ``day``.
        ScoringError: no champion, or the features do not match a model's signature.
        ValidationError: the written partition fails a critical expectation.
    """
    import pyarrow.compute as pc

    spark, settings, lakehouse, run_id = ctx.spark, ctx.settings, ctx.lakehouse, ctx.run_id
    lakehouse.require_days(
        FEATURES, [day], EVENT_DATE, hint=f": build the day's features before scoring it "
        f"(regrow features --date {day})",
    )  # fmt: skip
    registry = ctx.registry
    scorers = load_scorers(registry, settings.score.shadow)
    version = lakehouse.table_version(FEATURES)
    features = lakehouse.spark_schema(FEATURES, version)
    check_inputs(features, scorers, f"{FEATURES} {EVENT_DATE}={day} (v{version})")
    commit = write_predictions(spark, lakehouse, features, scorers, settings, day, version, run_id)
    record_versions(lakehouse, registry, [s.version for s in scorers], run_id)
    written = lakehouse.to_arrow(
        PREDICTIONS, commit.version, {EVENT_DATE: day}, columns=[MODEL_ALIAS, DECISION]
    )
    champion = written.filter(pc.equal(written[MODEL_ALIAS], CHAMPION))
    report = ScoreReport(
        day=str(day),
        events=champion.num_rows,
        rows=written.num_rows,
        models={s.alias: s.version.version for s in scorers},
        flagged=int(pc.sum(champion[DECISION]).as_py() or 0),
        threshold=settings.score.threshold,
        source_version=version,
        version=commit.version,
    )
    logger.info(
        "gold.predictions %s: %d events scored by %s, %d flagged at %.3f -> v%d",
        day, report.events, report.models, report.flagged, report.threshold, commit.version,
    )  # fmt: skip
    validate_day(ctx, day, tables=[PREDICTIONS])
    return report


def read_predictions(
    lakehouse: Lakehouse, day: dt.date, alias: str | None = CHAMPION, top: int | None = None
) -> pa.Table:
    """A day's gold.predictions rows, highest score first, without Spark.

    Args:
        alias: ``champion``, ``shadow``, or None for both.
        top: keep only the ``top`` highest scores (per alias).

    Raises:
        MissingPartitionError: the day has not been scored.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    lakehouse.require_days(
        PREDICTIONS, [day], EVENT_DATE, hint=f": score it first (regrow score --date {day})"
    )
    rows = lakehouse.to_arrow(PREDICTIONS, partitions={EVENT_DATE: day})
    aliases = [alias] if alias else list(ALIASES)
    out = []
    for a in aliases:
        chosen = rows.filter(pc.equal(rows[MODEL_ALIAS], a))
        # Ties broken by event id, so the same day always lists the same rows.
        chosen = chosen.sort_by([(SCORE, "descending"), (chosen.column_names[0], "ascending")])
        out.append(chosen.slice(0, top) if top is not None else chosen)
    return pa.concat_tables(out)
