"""silver.labels: natural labels joined to the event they belong to, and their maturity.

A label *arrives* late (a chargeback days or weeks after the transaction). ``silver.labels``
keeps every label as it arrived, partitioned by the day it landed (``label_date``), joined
to its event (entity, event time, event day). Nothing in it depends on a cut-off, so a day
written once never changes.

What a training set may know is decided at its cut-off instant (:func:`labels_as_of`):

- ``arrived``: a label arrived before the cut-off (the latest one, if it was revised);
- ``window_closed``: none arrived, but the label window (``dataset.label_delay_days``) has
  closed by the cut-off: the event counts as the negative label;
- ``unknown``: neither; the event's label is not known yet. It is not a negative.

**The boundary rule**, the one definition every stage uses (training sets, the monitor's
realised performance): an event at ``t`` has the label window ``[t, t + label_delay_days]``,
both ends included. At a cut-off ``c`` (an instant, exclusive) a label is known when it
arrived before ``c`` (:func:`label_known`) and the window has closed when its end is before
``c`` (:func:`window_closed`). So a label arriving exactly ``label_delay_days`` after its
event is inside the window: at a cut-off equal to its arrival the event is ``unknown`` (not
a negative), and from any later cut-off on it has that label. A label arriving after the
window is a late revision: the event counts as negative until the label arrives.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from regrow.catalog import (
    ARRIVED,
    EVENT_DATE,
    EVENTS,
    LABEL_DATE,
    LABEL_STATUS,
    LABELS,
    RELEASED_AT,
    RUN_ID,
    SILVER_LABELS,
    SOURCE_VERSIONS,
    UNKNOWN,
    WINDOW_CLOSED,
    label_columns,
)
from regrow.data.passes import cut_into_passes, in_passes
from regrow.settings import DatasetSettings
from regrow.storage.lakehouse import LakehouseError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from regrow.stage import StageContext

logger = logging.getLogger(__name__)


class UnmatchedLabelsError(LakehouseError):
    """Labels whose event is not in bronze.events (it was re-ingested without them)."""


def negative_label(dataset: DatasetSettings) -> int:
    """The label an event gets when its window closes without a label."""
    return next(v for v in dataset.label_values if v != dataset.positive_label)


def cutoff_instant(day: dt.date) -> dt.datetime:
    """A cut-off day as an instant: 00:00 UTC of that day (exclusive)."""
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def window_end(dataset: DatasetSettings) -> Column:
    """When an event's label window ends (inclusive): its timestamp + label_delay_days."""
    from pyspark.sql import functions as F

    delay = F.make_interval(days=F.lit(dataset.label_delay_days))
    return F.col(dataset.event_timestamp) + delay


def window_closed(dataset: DatasetSettings, cutoff: dt.datetime) -> Column:
    """Whether an event's label window has closed by ``cutoff`` (exclusive): it ended
    before the cut-off, so no label inside the window can still arrive."""
    from pyspark.sql import functions as F

    return window_end(dataset) < F.lit(cutoff).cast("timestamp")


def label_known(dataset: DatasetSettings, cutoff: dt.datetime) -> Column:
    """Whether a label row had arrived by ``cutoff`` (exclusive)."""
    from pyspark.sql import functions as F

    return F.col(dataset.label_timestamp) < F.lit(cutoff).cast("timestamp")


def newest_matured_day(dataset: DatasetSettings, cutoff: dt.date) -> dt.date:
    """The newest event day whose every label window has closed by the cut-off day
    (:func:`window_closed` for its last instant)."""
    return cutoff - dt.timedelta(days=dataset.label_delay_days + 1)


def join_labels(labels: DataFrame, events: DataFrame, dataset: DatasetSettings) -> DataFrame:
    """Each landed label with its event's entity, time and day.

    Args:
        labels: bronze.labels rows (of one landing day, or several).
        events: bronze.events of the days those labels can belong to. A label joins an
            event of its own label window only: of the ``dataset.label_delay_days`` before
            its landing day, or of that day.

    Raises:
        UnmatchedLabelsError: naming labels whose event is not in ``events``.
    """
    from pyspark.sql import functions as F

    entity = [dataset.entity_id] if dataset.entity_id else []
    e = events.select(
        F.col(dataset.event_id).alias("__event"),
        *[F.col(c).alias("__entity") for c in entity],
        F.col(dataset.event_timestamp).alias("__event_time"),
        F.col(EVENT_DATE).alias("__event_date"),
    )
    landed = labels[LABEL_DATE]
    in_window = e["__event_date"].between(F.date_sub(landed, dataset.label_delay_days), landed)
    joined = labels.join(e, (labels[dataset.event_id] == e["__event"]) & in_window, "left")
    unmatched = joined.where(F.col("__event").isNull()).select(dataset.event_id)
    lost = unmatched.limit(5).collect()
    if lost:
        ids = [r[0] for r in lost]
        raise UnmatchedLabelsError(
            f"{unmatched.count()} label(s) belong to no event in bronze.events (e.g. "
            f"{dataset.event_id} {ids}): re-ingest the labels' landing day so they are "
            "quarantined with a reason, or restore the events"
        )
    return joined.select(
        F.col(dataset.event_id),
        *[F.col("__entity").alias(c) for c in entity],
        F.col("__event_time").alias(dataset.event_timestamp),
        F.col("__event_date").alias(EVENT_DATE),
        F.col(dataset.label).cast("int").alias(dataset.label),
        F.col(dataset.label_timestamp),
        F.col(LABEL_DATE),
    )


def labels_as_of(
    events: DataFrame,
    labels: DataFrame,
    dataset: DatasetSettings,
    cutoff: dt.datetime,
) -> DataFrame:
    """Every event with its label as known at ``cutoff`` (an instant, exclusive).

    Args:
        events: rows with the dataset's event id and event timestamp (other columns kept).
        labels: silver.labels rows (any days; those arrived at or after ``cutoff`` are ignored).

    Returns:
        ``events`` plus the label column, the label timestamp (for a closed window: when it
        closed) and ``label_status``: ``arrived``, ``window_closed`` or ``unknown`` (label
        null).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    latest = Window.partitionBy(dataset.event_id).orderBy(
        F.col(dataset.label_timestamp).desc(), F.col(LABEL_DATE).desc(), F.col(dataset.label).desc()
    )
    known = (
        labels.where(label_known(dataset, cutoff))
        .withColumn("__rank", F.row_number().over(latest))
        .where("__rank = 1")
        .select(
            F.col(dataset.event_id).alias("__labelled"),
            F.col(dataset.label).alias("__label"),
            F.col(dataset.label_timestamp).alias("__label_time"),
        )
    )
    closed = window_closed(dataset, cutoff)
    joined = events.join(known, events[dataset.event_id] == known["__labelled"], "left")
    status = (
        F.when(F.col("__labelled").isNotNull(), F.lit(ARRIVED))
        .when(closed, F.lit(WINDOW_CLOSED))
        .otherwise(F.lit(UNKNOWN))
    )
    label = F.when(F.col("__labelled").isNotNull(), F.col("__label")).when(
        closed, F.lit(negative_label(dataset))
    )
    label_time = F.when(F.col("__labelled").isNotNull(), F.col("__label_time")).when(
        closed, window_end(dataset)
    )
    own = [c for c in events.columns if c not in (dataset.label, dataset.label_timestamp)]
    return joined.select(
        *own,
        label.cast("int").alias(dataset.label),
        label_time.cast("timestamp").alias(dataset.label_timestamp),
        status.alias(LABEL_STATUS),
    )


@dataclass(frozen=True)
class LabelsReport:
    day: str
    rows: int
    source_versions: dict[str, int]
    version: int
    # Later days rebuilt because labels were released into them (see build_labels).
    rebuilt: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def build_labels(ctx: StageContext, day: dt.date) -> LabelsReport:
    """Join the labels that landed on ``day`` to their events and replace the day's
    silver.labels partition (a day with no labels leaves it empty).

    Then the later days of the label window that got labels since their silver.labels
    was built are built again: labels quarantined on them for want of their event are
    released into their bronze.labels partition when ``day``'s events land late
    (:func:`regrow.data.ingest.release_labels`), and silver.labels must not miss them.
    Which days is read from the Delta logs (no data is read): a day whose bronze.labels
    holds a released label written after its silver.labels partition.

    Raises:
        MissingPartitionError: ``day`` was never ingested (no bronze.events partition).
        UnmatchedLabelsError: a label's event is not in bronze.events.
    """
    return labels_of_days(ctx, [day])(day)


def labels_of_days(ctx: StageContext, days: Sequence[dt.date]) -> Callable[[dt.date], LabelsReport]:
    """:func:`build_labels` for each of ``days``, built in the caller's order: the days
    that landed labels are joined to their events in passes (:mod:`regrow.data.passes`: one
    read and one join for many small days), each day's partition written and reported as
    a day built alone. A day joins the same events either way (those of its own label
    window). A pass that fails (a label of no event) is built day by day, so that only the
    day at fault fails, as alone; so does a day never ingested."""
    from pyspark.sql import functions as F

    spark, dataset, lakehouse = ctx.spark, ctx.settings.dataset, ctx.lakehouse
    ingested = lakehouse.partition_rows(EVENTS, EVENT_DATE)
    landed = lakehouse.partition_rows(LABELS)
    joinable = [d for d in days if str(d) in ingested and landed.get(str(d))]
    versions = (
        {EVENTS: lakehouse.table_version(EVENTS), LABELS: lakehouse.table_version(LABELS)}
        if joinable
        else {}
    )

    def compute(pass_days: list[dt.date]) -> DataFrame:
        labels = lakehouse.read(
            spark, LABELS, version=versions[LABELS], partitions={LABEL_DATE: pass_days}
        )
        window = sorted({d - dt.timedelta(days=n) for d in pass_days
                         for n in range(dataset.label_delay_days + 1)})  # fmt: skip
        events = lakehouse.read(
            spark, EVENTS, version=versions[EVENTS], partitions={EVENT_DATE: window}
        )
        return join_labels(labels, events, dataset)

    def write(joined: DataFrame, day: dt.date) -> LabelsReport:
        day_rows = joined.where(F.col(LABEL_DATE) == F.lit(day))
        return _write_day(ctx, day_rows, day, versions, landed[str(day)])

    def rows(day: dt.date) -> int:  # what a pass reads of the day: its labels and events
        return landed[str(day)] + ingested[str(day)]

    in_pass = set(joinable)
    build_pass_day = in_passes(cut_into_passes(joinable, rows), compute, write)

    def build(day: dt.date) -> LabelsReport:
        report = build_pass_day(day) if day in in_pass else _build_day(ctx, day)
        for later in released_since_built(ctx, day):
            logger.info("silver.labels %s: rebuilt for the labels released into it", later)
            _build_day(ctx, later)
            report.rebuilt.append(str(later))
        return report

    return build


def released_since_built(ctx: StageContext, day: dt.date) -> list[dt.date]:
    """The days after ``day`` within the label window whose bronze.labels partition holds
    a released label written after their silver.labels partition, among the days whose
    events were ingested."""
    lakehouse, window = ctx.lakehouse, ctx.settings.dataset.label_delay_days
    released = lakehouse.partition_written(LABELS, LABEL_DATE, holding=RELEASED_AT)
    if not released:
        return []
    built = lakehouse.partition_written(SILVER_LABELS, LABEL_DATE)
    ingested = lakehouse.partition_rows(EVENTS, EVENT_DATE)
    later = [day + dt.timedelta(days=n) for n in range(1, window + 1)]
    return [
        d for d in later
        if str(d) in released and str(d) in ingested and released[str(d)] > built.get(str(d), 0)
    ]  # fmt: skip


def _build_day(ctx: StageContext, day: dt.date) -> LabelsReport:
    spark, dataset, lakehouse = ctx.spark, ctx.settings.dataset, ctx.lakehouse
    # The day's events prove the day was ingested: its labels may be legitimately none.
    lakehouse.require_days(
        EVENTS,
        [day],
        EVENT_DATE,
        hint=f": ingest {day} before building its labels (regrow ingest --date {day})",
    )
    versions = {EVENTS: lakehouse.table_version(EVENTS)}
    landed = lakehouse.partition_rows(LABELS).get(str(day), 0)
    if landed:
        versions[LABELS] = lakehouse.table_version(LABELS)
        labels = lakehouse.read(
            spark, LABELS, version=versions[LABELS], partitions={LABEL_DATE: day}
        )
        first = day - dt.timedelta(days=dataset.label_delay_days)
        window = [first + dt.timedelta(days=i) for i in range(dataset.label_delay_days + 1)]
        events = lakehouse.read(
            spark, EVENTS, version=versions[EVENTS], partitions={EVENT_DATE: window}
        )
        joined = join_labels(labels, events, dataset)
    else:
        schema = ", ".join(f"`{c}` {t}" for c, t in label_columns(dataset).items())
        joined = spark.createDataFrame([], schema)
    return _write_day(ctx, joined, day, versions, landed)


def _write_day(
    ctx: StageContext, joined: DataFrame, day: dt.date, versions: dict[str, int], landed: int
) -> LabelsReport:
    """Replace ``day``'s silver.labels partition with its ``joined`` labels (read from the
    ``versions`` of the bronze tables; ``landed``: its bronze.labels rows)."""
    from pyspark.sql import functions as F

    lakehouse = ctx.lakehouse
    out = joined.select(
        "*",
        F.to_json(
            F.create_map(*[x for k, v in versions.items() for x in (F.lit(k), F.lit(v))])
        ).alias(SOURCE_VERSIONS),
        F.lit(ctx.run_id).alias(RUN_ID),
    )
    commit = lakehouse.write(
        out, SILVER_LABELS, "overwrite", partition_by=[LABEL_DATE], partition={LABEL_DATE: day},
        rows_at_most=landed,  # a label joins one event at most
    )  # fmt: skip
    rows = lakehouse.partition_rows(SILVER_LABELS).get(str(day), 0)
    logger.info(
        "silver.labels %s: %d label(s) joined to their events -> v%d", day, rows, commit.version
    )
    return LabelsReport(str(day), rows, versions, commit.version)
