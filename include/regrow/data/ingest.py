"""Ingest: a day's landing files into ``bronze.events``, ``bronze.labels`` and
``bronze.quarantine``.

Every landed row ends in exactly one place: typed in bronze, or in quarantine with the
reason, its source file and the raw record. ``rows in = bronze rows + quarantine rows``
is checked on every run. A day's rerun replaces that day's partitions only, and an event
landed twice (the same file under two names) is kept once: the copies are quarantined as
duplicates, so ingesting the same file twice adds nothing to bronze.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from regrow.catalog import (
    EVENT_DATE,
    EVENTS,
    EXTRA_COLUMNS,
    INGEST_DATE,
    INGESTED_AT,
    LABEL_DATE,
    LABELS,
    QUARANTINE,
    RUN_ID,
    SOURCE_FILE,
    SOURCE_KIND,
    TABLES,
)
from regrow.data import landing
from regrow.data.landing_reader import CORRUPT, MISSING_COLUMNS, RAW, IngestError, read_landing
from regrow.settings import DatasetSettings
from regrow.storage.lakehouse import Lakehouse
from regrow.validation import runtime_parameters, split_invalid_rows, suite_for

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from regrow.stage import StageContext

logger = logging.getLogger(__name__)


@dataclass
class KindReport:
    files: list[str] = field(default_factory=list)
    rows_in: int = 0
    bronze_rows: int = 0
    quarantined_rows: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class IngestReport:
    day: str
    run_id: str
    events: KindReport
    labels: KindReport

    def as_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------- typing and rules
def _typed(raw: Column, logical: str) -> Column:
    from pyspark.sql import functions as F

    if logical == "string":
        return F.when(F.trim(raw) == "", None).otherwise(raw)
    if logical == "int":
        # "1" and "1.0" are the same label; "1.5" is not an integer.
        number = raw.try_cast("double")
        return F.when(number == F.floor(number), number.cast("int"))
    return raw.try_cast(logical)


def split_rows(
    raw: DataFrame,
    types: dict[str, str],
    required: list[str],
    checks: list[tuple[Callable[[], Column], Callable[[], Column]]],
    dedupe_key: str,
    latest_by: str | None = None,
) -> tuple[DataFrame, DataFrame, int]:
    """Type the raw string columns and split rows into (good, rejected-with-reason, and
    the number of rows in).

    A row is rejected when it is malformed, its file lacks a column, a required value is
    missing, a value does not parse as its type or is not valid UTF-8, a ``checks`` rule
    fails (a pair of functions building the failing condition and the reason; ``raw``
    columns named ``__*`` are carried for them), or it repeats an earlier row's
    ``dedupe_key``: the first by file name and position is kept, or with ``latest_by`` the
    row with the latest value of that column (a revised label replaces the earlier one).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    carried = [c for c in raw.columns if c.startswith("__")]  # inputs of ``checks``
    typed = raw.select(
        *[F.col(f"`{c}`").alias(f"__s_{c}") for c in types],
        CORRUPT,
        MISSING_COLUMNS,
        RAW,
        EXTRA_COLUMNS,
        SOURCE_FILE,
        *carried,
        F.monotonically_increasing_id().alias("__pos"),
    )
    typed = typed.select("*", *[_typed(F.col(f"`__s_{c}`"), t).alias(c) for c, t in types.items()])
    reasons = [
        F.when(
            F.col(CORRUPT).isNotNull(),
            F.lit("malformed record (wrong number of fields or unparseable)"),
        ),
        F.when(
            F.col(MISSING_COLUMNS).isNotNull(),
            F.concat(F.lit("file lacks column(s) "), F.col(MISSING_COLUMNS)),
        ),
    ]
    for column, logical in types.items():
        value, parsed = F.col(f"`__s_{column}`"), F.col(f"`{column}`")
        blank = value.isNull() | (F.trim(value) == "")
        if column in required:
            reasons.append(
                F.when(F.col(MISSING_COLUMNS).isNull() & blank, F.lit(f"missing {column}"))
            )
        # Bytes that are not UTF-8 were decoded as U+FFFD: the value is not what was sent.
        reasons.append(
            F.when(value.contains("\ufffd"), F.lit(f"{column}: bytes that are not valid UTF-8"))
        )
        if logical == "double":  # "Infinity" and "NaN" parse, but are no measurement
            reasons.append(
                F.when(
                    F.isnan(parsed) | (F.abs(parsed) == float("inf")),
                    F.concat(
                        F.lit(f"{column}: "),
                        F.to_json(F.array(value)),
                        F.lit(" is not a finite number"),
                    ),
                )
            )
        reasons.append(
            F.when(
                ~blank & parsed.isNull(),
                F.concat(
                    F.lit(f"{column}: "),
                    F.to_json(F.array(value)),
                    F.lit(f" is not a valid {logical}"),
                ),
            )
        )
    for condition, reason in checks:
        reasons.append(F.when(condition(), reason()))
    # The reasons joined, "" when there is none: concat_ws skips nulls and compiles to Java
    # with the rest of the projection (an array filtered by a lambda would not, and made
    # each row's ~40 expressions interpreted: 8 s of a 200k-row day instead of 1).
    flagged = typed.withColumn("__reason", F.concat_ws("; ", *reasons))
    is_valid = F.col("__reason") == ""
    keys = [F.col(SOURCE_FILE), F.col("__pos")]
    if latest_by:
        keys.insert(0, F.col(latest_by).desc_nulls_last())
    # Only rows that are otherwise valid take part in the duplicate check: the window
    # groups valid and invalid rows apart, in one pass over the rows.
    order = Window.partitionBy(F.col(dedupe_key), is_valid).orderBy(*keys)
    first = F.first(F.struct(F.col(SOURCE_FILE), F.col("__pos"))).over(order)
    flagged = flagged.withColumn("__first", first)
    duplicate = is_valid & (
        (F.col("__first.__pos") != F.col("__pos"))
        | (F.col(f"__first.{SOURCE_FILE}") != F.col(SOURCE_FILE))
    )
    duplicate_reason = F.concat(
        F.lit(
            f"duplicate {dedupe_key} (the one with the latest {latest_by} was kept, from "
            if latest_by
            else f"duplicate {dedupe_key} (first landed in "
        ),
        F.col(f"__first.{SOURCE_FILE}"),
        F.lit(")"),
    )
    flagged = flagged.withColumn(
        "__reason", F.when(duplicate, duplicate_reason).otherwise(F.col("__reason"))
    ).drop("__first")
    # Computed once: bronze and quarantine are both cheap filters of it, and its count is
    # the rows in (counting the landed files instead would parse them once more).
    flagged = flagged.localCheckpoint(eager=True)
    rows_in = flagged.count()
    good = flagged.where(F.col("__reason") == "").select(*types, EXTRA_COLUMNS, SOURCE_FILE)
    record = F.coalesce(
        F.col(CORRUPT),
        F.when(F.col(MISSING_COLUMNS).isNotNull(), F.col(RAW)),
        F.to_json(F.struct(*[F.col(f"`__s_{c}`").alias(c) for c in types])),
    )
    rejected = flagged.where(F.col("__reason") != "").select(
        F.col(SOURCE_FILE).alias("source_file"),
        F.col("__reason").alias("reason"),
        record.alias("record"),
    )
    return good, rejected, rows_in


def _day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    # Aware datetimes: PySpark turns a naive one into an instant in the *process's* time
    # zone, whatever the session time zone is.
    start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def event_rules(dataset: DatasetSettings, day: dt.date, now: dt.datetime):
    """Row rules of an event: its timestamp is on the landing day and not in the future."""
    from pyspark.sql import functions as F

    start, end = _day_bounds(day)
    ts = F.col(dataset.event_timestamp)
    now_utc = now.astimezone(dt.UTC)
    return [
        (
            lambda: ts > F.lit(now_utc),
            lambda: F.concat(
                F.lit(f"{dataset.event_timestamp} "),
                ts.cast("string"),
                F.lit(f" is in the future (ingested at {now_utc:%Y-%m-%d %H:%M:%S} UTC)"),
            ),
        ),
        (
            lambda: ts.isNotNull() & ((ts < F.lit(start)) | (ts >= F.lit(end))),
            lambda: F.concat(
                F.lit(f"{dataset.event_timestamp} "),
                ts.cast("string"),
                F.lit(f" is not on {day} (UTC)"),
            ),
        ),
    ]


def label_rules(dataset: DatasetSettings, day: dt.date):
    """Row rules of a label: a known label value, not arrived after the landing day, and
    for an event that bronze has (``__known_event`` is set by :func:`with_known_events`)."""
    from pyspark.sql import functions as F

    _, end = _day_bounds(day)
    label, ts = F.col(dataset.label), F.col(dataset.label_timestamp)
    event = F.col(dataset.event_id)
    return [
        (
            lambda: event.isNotNull() & F.col(KNOWN_EVENT).isNull(),
            lambda: F.concat(
                F.lit(f"label for an unknown {dataset.event_id} "),
                event,
                F.lit(f" (not in {EVENTS} within {dataset.label_delay_days} days before {day})"),
            ),
        ),
        (
            lambda: label.isNotNull() & ~label.isin(dataset.label_values),
            lambda: F.concat(
                F.lit(f"{dataset.label} "),
                label.cast("string"),
                F.lit(f" not in {dataset.label_values}"),
            ),
        ),
        (
            lambda: ts.isNotNull() & (ts >= F.lit(end)),
            lambda: F.concat(
                F.lit(f"{dataset.label_timestamp} "),
                ts.cast("string"),
                F.lit(f" is after {day} (UTC)"),
            ),
        ),
    ]


# -------------------------------------------------------------------------------- the job
KNOWN_EVENT = "__known_event"


def with_known_events(
    raw_labels: DataFrame, lakehouse: Lakehouse, dataset: DatasetSettings, day: dt.date
) -> DataFrame:
    """Mark each landed label whose event is in ``bronze.events`` within the label window
    (``label_delay_days`` before the landing day, up to it) in ``__known_event``."""
    from pyspark.sql import functions as F

    spark = raw_labels.sparkSession
    first = day - dt.timedelta(days=dataset.label_delay_days)
    if lakehouse.exists(EVENTS):
        window = [first + dt.timedelta(days=i) for i in range(dataset.label_delay_days + 1)]
        events = lakehouse.read(spark, EVENTS, partitions={EVENT_DATE: window})
        known = events.select(F.col(dataset.event_id).alias(KNOWN_EVENT)).distinct()
    else:
        known = spark.createDataFrame([], f"{KNOWN_EVENT} string")
    return raw_labels.join(
        F.broadcast(known), raw_labels[f"`{dataset.event_id}`"] == known[KNOWN_EVENT], "left"
    )


def ingest_day(ctx: StageContext, day: dt.date) -> IngestReport:
    """Ingest one day's landing files; returns counts per kind and quarantine reasons."""
    from pyspark.sql import functions as F

    spark, settings, lakehouse, run_id = ctx.spark, ctx.settings, ctx.lakehouse, ctx.run_id
    root = settings.resolve(settings.landing.path)
    dataset = settings.dataset
    event_files = landing.find_files(root, settings.landing, "events", day)
    if not event_files:
        raise IngestError(
            f"no events landed for {day}: nothing matches "
            f"{landing.day_pattern(root, settings.landing, 'events', day)}"
        )
    label_files = landing.find_files(root, settings.landing, "labels", day)
    now = dt.datetime.now(dt.UTC)
    ingested_at = F.lit(now).cast("timestamp")
    meta = [ingested_at.alias(INGESTED_AT), F.lit(run_id).alias(RUN_ID)]

    plans = [
        _Plan("events", EVENTS, EVENT_DATE, event_files, dataset.event_columns(),
              [dataset.event_id, dataset.entity_id, dataset.event_timestamp],
              event_rules(dataset, day, now)),
        _Plan("labels", LABELS, LABEL_DATE, label_files, dataset.label_columns(),
              [dataset.event_id, dataset.label, dataset.label_timestamp], label_rules(dataset, day),
              latest_by=dataset.label_timestamp),
    ]  # fmt: skip
    suites = {plan.kind: suite_for(settings, plan.table) for plan in plans}
    parameters = runtime_parameters(day, now=now)
    reports = {}
    for plan in plans:
        with tempfile.TemporaryDirectory(prefix="regrow-landing-") as staging:
            raw = read_landing(spark, plan.files, settings.landing, list(plan.types), staging)
            if plan.kind == "labels":  # after the day's events are in bronze
                raw = with_known_events(raw, lakehouse, dataset, day)
            reports[plan.kind] = _ingest_kind(
                lakehouse, raw, plan, day, dataset.event_id, meta, suites[plan.kind], parameters
            )
    return IngestReport(day.isoformat(), run_id, reports["events"], reports["labels"])


@dataclass(frozen=True)
class _Plan:
    """One kind of landing file and the bronze table it lands in."""

    kind: str
    table: str
    date_column: str
    files: list[str]
    types: dict[str, str]
    required: list[str]
    rules: list
    latest_by: str | None = None  # of rows sharing an event id, keep the latest by this


def _ingest_kind(
    lakehouse: Lakehouse,
    raw: DataFrame,
    plan: _Plan,
    day: dt.date,
    dedupe_key: str,
    meta: list,
    suite,
    parameters: dict,
) -> KindReport:
    """Parse, quarantine what breaks the contract or a row-level expectation of the
    table's suite, and write both halves."""
    from pyspark.sql import functions as F

    kind, table, date_column, files, types = (
        plan.kind,
        plan.table,
        plan.date_column,
        plan.files,
        plan.types,
    )
    good, rejected, rows_in = split_rows(
        raw, types, plan.required, plan.rules, dedupe_key=dedupe_key, latest_by=plan.latest_by
    )
    # Row-level expectations of the suite (kept in git, editable) isolate bad rows the
    # parse rules above let through; the rest of the suite runs after the write.
    good, failing = split_invalid_rows(good, suite, parameters, checkpoint=False)
    record = F.to_json(F.struct(*[F.col(f"`{c}`").cast("string").alias(c) for c in types]))
    rejected = rejected.unionByName(
        failing.select(F.col(SOURCE_FILE).alias("source_file"), "reason", record.alias("record"))
    )
    # One file per ~1M rows: a day is one partition, and tiny files slow every reader.
    n_files = max(1, rows_in // 1_000_000)
    good = good.coalesce(n_files)
    rejected = rejected.coalesce(1)
    good = good.select(
        *types, F.lit(day).alias(date_column), F.col(EXTRA_COLUMNS), F.col(SOURCE_FILE), *meta
    )
    rejected = rejected.select(
        F.lit(kind).alias(SOURCE_KIND),
        "source_file",
        "reason",
        "record",
        *meta,
        F.lit(day).alias(INGEST_DATE),
    )
    good_commit = lakehouse.write(
        good, table, "overwrite", partition_by=[date_column], partition={date_column: day}
    )
    bad_commit = lakehouse.write(
        rejected,
        QUARANTINE,
        "overwrite",
        partition_by=list(TABLES[QUARANTINE].partition_by),
        partition={INGEST_DATE: day, SOURCE_KIND: kind},
    )
    report = KindReport(
        files=files,
        rows_in=rows_in,
        bronze_rows=good_commit.rows_written,
        quarantined_rows=bad_commit.rows_written,
        # A clean day quarantines nothing: no job to count its reasons.
        reasons=_reason_counts(rejected) if bad_commit.rows_written else {},
    )
    if report.rows_in != report.bronze_rows + report.quarantined_rows:
        raise IngestError(
            f"{kind} of {day}: {report.rows_in} rows landed but {report.bronze_rows} reached "
            f"{table} and {report.quarantined_rows} {QUARANTINE}; rows were lost"
        )
    logger.info(
        "%s %s: %d rows in %d file(s) -> %d in %s, %d quarantined",
        day,
        kind,
        report.rows_in,
        len(files),
        report.bronze_rows,
        table,
        report.quarantined_rows,
    )
    return report


def _reason_counts(rejected: DataFrame, top: int = 20) -> dict[str, int]:
    """The most frequent quarantine reasons with their counts."""
    rows = (
        rejected.groupBy("reason")
        .count()
        .orderBy("count", "reason", ascending=[False, True])
        .limit(top)
    )
    return {r["reason"]: int(r["count"]) for r in rows.collect()}
