"""silver.features: one row per event, with what the model may know at the event's time.

The contract's own features, plus per-entity aggregates over **strictly earlier** events:
for each window ``w`` of ``features.windows``

- ``prior_events_{w}``: how many events the entity had in the ``w`` before this one;
- ``{col}_prior_sum_{w}``: their sum of ``col`` (each of ``features.sum_columns``);

and, over the longest window,

- ``seconds_since_prior_event``: time since the entity's previous event (null: none);
- ``{col}_to_prior_mean_{w}``: ``col`` divided by the entity's mean of it (each of
  ``features.ratio_columns``; null when there is no earlier value or the mean is 0).

"Strictly earlier" is a Spark range frame ending one microsecond before the event: an
event never sees itself, another event of the same instant, or anything later. A day reads
its own ``bronze.events`` partition and the ``lookback_days`` before it, so its features
never change when later days arrive, and are the same computed alone or in a backfill.

A contract without an entity (``dataset.entity_id`` null) has no windows: a day's rows are
its events with the contract's features only.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from regrow.catalog import (
    EVENT_DATE,
    EVENTS,
    FEATURES,
    RUN_ID,
    SECONDS_SINCE_PRIOR,
    SOURCE_VERSION,
    derived_columns,
    key_columns,
)
from regrow.data import landing
from regrow.data.passes import cut_into_passes, in_passes
from regrow.settings import DatasetSettings, FeatureSettings
from regrow.storage.lakehouse import MissingPartitionError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from regrow.stage import StageContext
    from regrow.storage.lakehouse import Lakehouse

logger = logging.getLogger(__name__)

_MICROS = 1_000_000


def compute_features(
    events: DataFrame,
    dataset: DatasetSettings,
    cfg: FeatureSettings,
    day: dt.date | Sequence[dt.date],
) -> DataFrame:
    """The features of ``day``'s events (of each of the days, given several).

    Args:
        events: bronze events of ``day`` and of the days before it that the longest window
            reaches (more is harmless; less leaves the aggregates short).

    Returns:
        One row per event of ``day``: event id, entity id (if the contract has one), event
        timestamp, the contract's features, the derived features (none without
        ``features.windows``), and ``event_date``.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    days = [day] if isinstance(day, dt.date) else list(day)
    wanted = F.col(EVENT_DATE).isin([F.lit(d) for d in days])
    ts_us = "__ts_us"
    seconds = cfg.window_seconds()
    history = events.withColumn(ts_us, F.unix_micros(F.col(dataset.event_timestamp)))
    base = [*key_columns(dataset), *dataset.features]
    if not cfg.windows:  # no entity (or no windows): the contract's features only
        return history.where(wanted).select(*base, EVENT_DATE)
    longest = max(seconds, key=seconds.get)
    by_entity = Window.partitionBy(dataset.entity_id).orderBy(ts_us)

    def before(window: str):
        """Events of the same entity in the ``window`` before this one, itself excluded."""
        return by_entity.rangeBetween(-seconds[window] * _MICROS, -1)

    derived = []
    for w in cfg.windows:
        derived.append(F.count(F.lit(1)).over(before(w)).alias(f"prior_events_{w}"))
        derived += [
            F.coalesce(F.sum(c).over(before(w)), F.lit(0.0))
            .cast("double")
            .alias(f"{c}_prior_sum_{w}")
            for c in cfg.sum_columns
        ]
    previous = F.max(ts_us).over(before(longest))
    derived.append(((F.col(ts_us) - previous) / _MICROS).cast("double").alias(SECONDS_SINCE_PRIOR))
    for c in cfg.ratio_columns:
        mean = F.avg(c).over(before(longest))
        derived.append(
            F.when(mean != 0, F.col(c) / mean).cast("double").alias(f"{c}_to_prior_mean_{longest}")
        )
    return (
        history.select(*base, EVENT_DATE, *derived)
        .where(wanted)
        .select(*base, *derived_columns(cfg), EVENT_DATE)
    )


@dataclass(frozen=True)
class FeaturesReport:
    day: str
    rows: int
    source_version: int
    days_read: list[str]
    version: int

    def as_dict(self) -> dict:
        return asdict(self)


def lookback(
    lakehouse: Lakehouse,
    day: dt.date,
    cfg: FeatureSettings,
    landed: Collection[dt.date] = (),
    present: Mapping[str, int] | None = None,
) -> list[dt.date]:
    """The days a day's features read: itself and the earlier days its longest window
    reaches, from the first day of the data on.

    The data starts at the first day ``bronze.events`` has, or the first of ``landed``
    (the days whose event files landed) if earlier: so a backfill that runs days at once
    cannot build a day before the landed days its windows reach are ingested.

    Args:
        present: ``bronze.events``' rows per day, when the caller has them
            (:meth:`~regrow.storage.lakehouse.Lakehouse.partition_rows`).

    Raises:
        MissingPartitionError: naming the day, or an earlier day inside the windows,
            that has no ``bronze.events`` partition (not ingested yet, or empty).
    """
    if present is None:
        present = lakehouse.partition_rows(EVENTS, EVENT_DATE)
    first = min([*(dt.date.fromisoformat(d) for d in present), *landed], default=day)
    days = [day - dt.timedelta(days=n) for n in range(cfg.lookback_days(), -1, -1)]
    days = [d for d in days if d >= min(first, day)]
    lakehouse.require_days(
        EVENTS,
        days,
        EVENT_DATE,
        hint=f": silver.features of {day} reads {days[0]}..{day}; ingest those days first "
        "(regrow ingest --date D)",
        present=present,
    )
    return days


def build_features(ctx: StageContext, day: dt.date) -> FeaturesReport:
    """Compute ``day``'s features from bronze.events and replace its silver.features
    partition (rerunning a day gives the same rows)."""
    return features_of_days(ctx, [day])(day)


def features_of_days(
    ctx: StageContext, days: Sequence[dt.date]
) -> Callable[[dt.date], FeaturesReport]:
    """:func:`build_features` for each of ``days``, built in the caller's order: days whose
    windows can be read are computed in passes (:mod:`regrow.data.passes`: one read of
    their events and one window sort for many small days), each day's partition written
    and reported as a day built alone. A day's rows do not depend on its pass: its windows
    only look back, and more history is harmless. A day whose windows reach a missing
    partition raises when it is built, naming it; the other days build."""
    from pyspark.sql import functions as F

    settings, lakehouse = ctx.settings, ctx.lakehouse
    landed = landing.landed_days(settings.resolve(settings.landing.path), "events")
    present = lakehouse.partition_rows(EVENTS, EVENT_DATE)
    reads: dict[dt.date, list[dt.date]] = {}
    missing: dict[dt.date, MissingPartitionError] = {}
    for day in days:
        try:
            reads[day] = lookback(lakehouse, day, settings.features, landed, present)
        except MissingPartitionError as err:
            missing[day] = err
    version = lakehouse.table_version(EVENTS) if reads else None

    def compute(pass_days: list[dt.date]) -> DataFrame:
        read = sorted({d for day in pass_days for d in reads[day]})
        events = lakehouse.read(ctx.spark, EVENTS, version=version, partitions={EVENT_DATE: read})
        return compute_features(events, settings.dataset, settings.features, pass_days).select(
            "*", F.lit(version).cast("long").alias(SOURCE_VERSION), F.lit(ctx.run_id).alias(RUN_ID)
        )

    def write(features: DataFrame, day: dt.date) -> FeaturesReport:
        commit = lakehouse.write(
            features.where(F.col(EVENT_DATE) == F.lit(day)),
            FEATURES,
            "overwrite",
            partition_by=[EVENT_DATE],
            partition={EVENT_DATE: day},
            rows_at_most=present.get(str(day)),  # one row per event
        )
        rows = lakehouse.partition_rows(FEATURES).get(str(day), 0)
        read = reads[day]
        logger.info(
            "silver.features %s: %d rows from bronze.events v%d (%s..%s) -> v%d",
            day, rows, version, read[0], day, commit.version,
        )  # fmt: skip
        return FeaturesReport(str(day), rows, version, [str(d) for d in read], commit.version)

    passes = cut_into_passes(list(reads), lambda day: present.get(str(day), 0))
    build_pass_day = in_passes(passes, compute, write)

    def build(day: dt.date) -> FeaturesReport:
        if day in missing:
            raise missing[day]
        return build_pass_day(day)

    return build
