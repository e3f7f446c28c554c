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
import os
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
    RELEASED_AT,
    RELEASED_BY,
    RUN_ID,
    SOURCE_FILE,
    SOURCE_KIND,
    SOURCE_LINE,
    TABLES,
)
from regrow.data import landing
from regrow.data.landing_reader import (
    CORRUPT,
    MISSING_COLUMNS,
    RAW,
    IngestError,
    Landed,
    read_day,
)
from regrow.data.row_rules import (
    EVENT_ENTITY,
    EVENT_TIME,
    duplicate_rule,
    event_match_rules,
    key_in_file,
    strip_key,
    suspect_text,
    text_reasons,
    value_rules,
    with_earlier_events,
)
from regrow.settings import DatasetSettings
from regrow.storage.lakehouse import Lakehouse
from regrow.storage.session import one_task_if_small
from regrow.validation import runtime_parameters, split_invalid_rows, suite_for

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from regrow.stage import StageContext

logger = logging.getLogger(__name__)


@dataclass
class KindReport:
    files: list[str] = field(default_factory=list)
    not_read: list[str] = field(default_factory=list)  # refused files, folder entries not read
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
    # Labels released from quarantine by this run (their event has landed since), per
    # the day they landed: {"2026-01-14": 3}. Their silver.labels days are to be rebuilt.
    released_labels: dict[str, int] = field(default_factory=dict)

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
    dataset: DatasetSettings | None = None,
    text_is_clean: bool = False,
    keys_repeat: bool | None = None,
) -> tuple[DataFrame, DataFrame, dict[str, int]]:
    """Type the raw string columns and split rows into (good, rejected-with-reason, and
    the number of rows in per source file).

    A row is rejected when it is malformed, its file lacks a column, a required value is
    missing, a value does not parse as its type or is not valid UTF-8, a ``checks`` rule
    fails (a pair of functions building the failing condition and the reason; ``raw``
    columns named ``__*`` are carried for them), or it repeats an earlier row's
    ``dedupe_key``: the first by file name and position is kept, or with ``latest_by`` the
    row with the latest value of that column (a revised label replaces the earlier one).
    With ``dataset``, its text rules apply too (:mod:`regrow.data.row_rules`: whitespace
    around keys, control characters, the maximum length); ``text_is_clean`` says the
    files' bytes hold no control character and no over-long value, which spares the scan
    of every value for them. ``keys_repeat`` False says no two landed rows share a
    ``dedupe_key`` (:func:`~regrow.data.landing_files.keys_repeat`): the duplicate check,
    a sort of every row, is not run (2.4 s of a 1M-row day's 11.5). The ``__*``
    columns travel with both halves.
    """
    from pyspark.sql import functions as F

    carried = [c for c in raw.columns if c.startswith("__")]  # inputs of ``checks``
    keys = [c for c in (dataset.event_id, dataset.entity_id) if c in types] if dataset else []
    typed = raw.select(
        *[F.col(f"`{c}`").alias(f"__s_{c}") for c in types],
        CORRUPT,
        MISSING_COLUMNS,
        RAW,
        EXTRA_COLUMNS,
        SOURCE_FILE,
        *carried,
    )

    if dataset is not None:  # computed once, in a projection of their own
        texts = [F.col(f"`__s_{c}`") for c, t in types.items() if t == "string"]
        typed = typed.select(
            "*",
            suspect_text(texts, dataset, text_is_clean).alias("__suspect"),
            *[key_in_file(F.col(f"`__s_{c}`"), dataset).alias(f"__k_{c}") for c in keys],
        )
        suspect = F.col("__suspect")

    def landed(column: str) -> Column:  # a key as it is compared and stored
        return F.col(f"`__k_{column}`" if column in keys else f"`__s_{column}`")

    typed = typed.select("*", *[_typed(landed(c), t).alias(c) for c, t in types.items()])
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
        if column in keys:  # a key of only whitespace is missing
            stripped = landed(column) if dataset.key_whitespace == "trim" else strip_key(value)
            blank = stripped.isNull() | (stripped == "")
        if dataset is not None and logical == "string":
            reasons.append(text_reasons(column, value, dataset, column in keys, suspect))
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
    if keys_repeat is not False:
        flagged = _flag_duplicates(flagged, dedupe_key, latest_by)
    record = F.coalesce(
        F.col(CORRUPT),
        F.when(F.col(MISSING_COLUMNS).isNotNull(), F.col(RAW)),
        F.to_json(F.struct(*[F.col(f"`__s_{c}`").alias(c) for c in types])),
    )
    # Computed once: bronze and quarantine are both cheap filters of it, and its count per
    # file is what Spark parsed of each (checked against the files' own record counts).
    # Only what the two halves need is kept: the typed values, and the landed text of a
    # rejected row as its quarantine record (the raw strings of every row would double
    # what is held, and a 1M-row day's checkpoint spilled to disk).
    flagged = flagged.select(
        *[F.col(f"`{c}`") for c in (*types, *carried)],
        EXTRA_COLUMNS,
        SOURCE_FILE,
        "__reason",
        F.when(F.col("__reason") != "", record).alias("__record"),
    ).localCheckpoint(eager=True)
    per_file = flagged.groupBy(SOURCE_FILE).count().collect()
    rows_in = {r[SOURCE_FILE]: int(r["count"]) for r in per_file}
    good = flagged.where(F.col("__reason") == "").select(
        *types, EXTRA_COLUMNS, SOURCE_FILE, *carried
    )
    rejected = flagged.where(F.col("__reason") != "").select(
        F.col(SOURCE_FILE).alias("source_file"),
        F.col("__reason").alias("reason"),
        F.col("__record").alias("record"),
        *carried,
    )
    return good, rejected, rows_in


def _flag_duplicates(flagged: DataFrame, dedupe_key: str, latest_by: str | None) -> DataFrame:
    """``flagged`` with the rows that repeat an earlier valid row's ``dedupe_key`` given
    the duplicate reason (see :func:`split_rows`)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    # The order within a file: the row's place in the rows as they stand here.
    flagged = flagged.withColumn("__pos", F.monotonically_increasing_id())
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
    )
    return flagged


def _day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    # Aware datetimes: PySpark turns a naive one into an instant in the *process's* time
    # zone, whatever the session time zone is.
    start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def event_rules(dataset: DatasetSettings, day: dt.date, now: dt.datetime):
    """Row rules of an event: its timestamp is on the landing day and not in the future,
    its values within the contract's value rules, and its id not already in bronze on an
    earlier day (``__first_landed`` is set by :func:`~regrow.data.row_rules.with_earlier_events`)."""
    from pyspark.sql import functions as F

    start, end = _day_bounds(day)
    ts = F.col(dataset.event_timestamp)
    now_utc = now.astimezone(dt.UTC)
    return [
        *value_rules(dataset),
        duplicate_rule(dataset),
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
    for an event that bronze has (``__known_event`` is set by :func:`with_known_events`),
    of the same entity and not before it."""
    from pyspark.sql import functions as F

    _, end = _day_bounds(day)
    label, ts = F.col(dataset.label), F.col(dataset.label_timestamp)
    event = F.col(dataset.event_id)
    return [
        *event_match_rules(dataset),
        (
            lambda: event.isNotNull() & F.col(KNOWN_EVENT).isNull(),
            lambda: F.concat(
                F.lit(f"{UNKNOWN_EVENT}{dataset.event_id} "),
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
# The start of the reason of a label whose event is not in bronze (yet): such labels are
# retried when later days are ingested (:func:`release_labels`).
UNKNOWN_EVENT = "label for an unknown "


def with_known_events(
    raw_labels: DataFrame, lakehouse: Lakehouse, dataset: DatasetSettings, day: dt.date
) -> DataFrame:
    """Mark each landed label whose event is in ``bronze.events`` within the label window
    (``label_delay_days`` before the landing day, up to it) in ``__known_event``, with
    the event's entity and time (``__event_entity``, ``__event_time``)."""
    from pyspark.sql import functions as F

    spark = raw_labels.sparkSession
    first = day - dt.timedelta(days=dataset.label_delay_days)
    entity = F.col(f"`{dataset.entity_id}`") if dataset.entity_id else F.lit(None)
    if lakehouse.exists(EVENTS):
        window = [first + dt.timedelta(days=i) for i in range(dataset.label_delay_days + 1)]
        events = lakehouse.read_days(spark, EVENTS, EVENT_DATE, window)
        known = events.select(
            F.col(f"`{dataset.event_id}`").alias(KNOWN_EVENT),
            entity.cast("string").alias(EVENT_ENTITY),
            F.col(f"`{dataset.event_timestamp}`").alias(EVENT_TIME),
        ).dropDuplicates([KNOWN_EVENT])  # ids landed on two days before they were unique
    else:
        known = spark.createDataFrame(
            [], f"{KNOWN_EVENT} string, {EVENT_ENTITY} string, {EVENT_TIME} timestamp"
        )
    key = key_in_file(raw_labels[f"`{dataset.event_id}`"], dataset)
    # The window's events of these labels only: labels are far fewer than events, so both
    # joins broadcast the small side.
    ids = raw_labels.select(key.alias("__label_event")).distinct()
    known = known.join(F.broadcast(ids), known[KNOWN_EVENT] == ids["__label_event"], "left_semi")
    return raw_labels.join(F.broadcast(known), key == known[KNOWN_EVENT], "left")


def ingest_day(ctx: StageContext, day: dt.date) -> IngestReport:
    """Ingest one day's landing files; returns counts per kind and quarantine reasons."""
    from pyspark.sql import functions as F

    spark, settings, lakehouse, run_id = ctx.spark, ctx.settings, ctx.lakehouse, ctx.run_id
    root = settings.resolve(settings.landing.path)
    dataset = settings.dataset
    event_files = landing.scan_day(root, settings.landing, "events", day)
    if not event_files.files:
        raise IngestError(_nothing_to_read(event_files, day, root, settings))
    label_files = landing.scan_day(root, settings.landing, "labels", day)
    now = dt.datetime.now(dt.UTC)
    ingested_at = F.lit(now).cast("timestamp")
    meta = [ingested_at.alias(INGESTED_AT), F.lit(run_id).alias(RUN_ID)]

    plans = [
        _Plan("events", EVENTS, EVENT_DATE, event_files, dataset.event_columns(),
              dataset.id_columns(),
              event_rules(dataset, day, now), contract=dataset),
        _Plan("labels", LABELS, LABEL_DATE, label_files, dataset.label_columns(),
              [dataset.event_id, dataset.label, dataset.label_timestamp], label_rules(dataset, day),
              latest_by=dataset.label_timestamp, contract=dataset,
              # silver.labels takes the entity from the event: a label file may omit it.
              optional=tuple(c for c in [dataset.entity_id] if c)),
    ]  # fmt: skip
    suites = {plan.kind: suite_for(settings, plan.table) for plan in plans}
    parameters = runtime_parameters(day, now=now)
    reports = {}
    with tempfile.TemporaryDirectory(prefix="regrow-landing-") as staging:
        # Both kinds' files are looked at before anything is written: a file that stops
        # the day (landing.unreadable: fail) leaves no half-written day behind.
        landings = {}
        for plan in plans:
            os.mkdir(folder := os.path.join(staging, plan.kind))
            landings[plan.kind] = read_day(
                spark, plan.files, settings.landing, list(plan.types), folder, plan.optional,
                key=dataset.event_id,
            )  # fmt: skip
        for plan in plans:
            landed = landings[plan.kind]
            raw = one_task_if_small(landed.rows, landed.records)
            if plan.kind == "events":
                raw = with_earlier_events(raw, lakehouse, dataset, day, landed.records)
            if plan.kind == "labels":  # after the day's events are in bronze
                raw = with_known_events(raw, lakehouse, dataset, day)
            reports[plan.kind] = _ingest_kind(
                lakehouse, raw, landed, plan, day, dataset.event_id, meta, suites[plan.kind],
                parameters,
            )  # fmt: skip
    # Labels quarantined for want of their event (landed before it, within its label
    # window) are checked again now that the day's events are in bronze.
    released = release_labels(ctx, landed=day)
    return IngestReport(day.isoformat(), run_id, reports["events"], reports["labels"], released)


@dataclass(frozen=True)
class _Plan:
    """One kind of landing file and the bronze table it lands in."""

    kind: str
    table: str
    date_column: str
    files: landing.DayFiles
    types: dict[str, str]
    required: list[str]
    rules: list
    latest_by: str | None = None  # of rows sharing an event id, keep the latest by this
    contract: DatasetSettings | None = None  # whose text rules apply (row_rules)
    optional: tuple[str, ...] = ()  # columns a file may lack


def _nothing_to_read(found: landing.DayFiles, day: dt.date, root: str, settings) -> str:
    """Why a day has no events file to read: nothing landed, or only what is not read."""
    expected = landing.day_pattern(root, settings.landing, "events", day)
    if not found.unread:
        return f"no events landed for {day}: nothing matches {expected}"
    first = found.unread[0]
    more = f" (and {len(found.unread) - 1} more)" if len(found.unread) > 1 else ""
    return (
        f"no events file to read for {day}: {first.source}: {first.reason}{more}; "
        f"files read are {expected}"
    )


def _python_rejects(spark, landed: Landed) -> DataFrame | None:
    """The records and files taken out before Spark, as quarantine rows (None if none)."""
    rows = [(r.source, r.reason, r.record, r.line) for r in landed.rejected]
    if not rows:
        return None
    schema = "source_file string, reason string, record string, source_line long"
    return spark.createDataFrame(rows, schema)


def _reconcile(parsed: dict[str, int], landed: Landed, kind: str, day: dt.date) -> None:
    """Spark parsed exactly the records each file holds, as counted without Spark."""
    for source, expected in landed.expected.items():
        got = parsed.get(source, 0)
        if got != expected:
            raise IngestError(
                f"{source}: the file holds {expected} record(s) but Spark's parser read {got}; "
                f"nothing of the {kind} of {day} is written (report this file: regrow's "
                f"record count and Spark's parser disagree on it)"
            )


def _ingest_kind(
    lakehouse: Lakehouse,
    raw: DataFrame,
    landed: Landed,
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
    good, rejected, parsed = split_rows(
        raw, types, plan.required, plan.rules, dedupe_key=dedupe_key, latest_by=plan.latest_by,
        dataset=plan.contract,
        text_is_clean=plan.contract is not None
        and landed.text_is_clean(plan.contract.max_string_length),
        keys_repeat=landed.keys_repeat,
    )  # fmt: skip
    _reconcile(parsed, landed, kind, day)
    taken_out = _python_rejects(raw.sparkSession, landed)
    rows_in = sum(parsed.values()) + len(landed.rejected)
    # Row-level expectations of the suite (kept in git, editable) isolate bad rows the
    # parse rules above let through; the rest of the suite runs after the write.
    good, failing = split_invalid_rows(good, suite, parameters, checkpoint=False)
    record = F.to_json(F.struct(*[F.col(f"`{c}`").cast("string").alias(c) for c in types]))
    rejected = rejected.unionByName(
        failing.select(F.col(SOURCE_FILE).alias("source_file"), "reason", record.alias("record")),
        allowMissingColumns=True,
    ).withColumn(SOURCE_LINE, F.lit(None).cast("long"))
    if taken_out is not None:
        rejected = rejected.unionByName(taken_out, allowMissingColumns=True)
    # One file per ~1M rows: a day is one partition, and tiny files slow every reader.
    n_files = max(1, rows_in // 1_000_000)
    good = good.coalesce(n_files)
    rejected = rejected.coalesce(1)
    good = good.select(
        *types, F.lit(day).alias(date_column), F.col(EXTRA_COLUMNS), F.col(SOURCE_FILE), *meta,
        *(_not_released() if table == LABELS else []),
    )  # fmt: skip
    rejected = rejected.select(
        F.lit(kind).alias(SOURCE_KIND),
        "source_file",
        "reason",
        "record",
        SOURCE_LINE,
        *meta,
        F.lit(day).alias(INGEST_DATE),
    )
    good_commit = lakehouse.write(
        good, table, "overwrite", partition_by=[date_column], partition={date_column: day},
        rows_at_most=rows_in,
    )  # fmt: skip
    if good_commit.rows_written == rows_in and not _quarantine_to_replace(lakehouse, day):
        # Every row reached bronze and the day's quarantine holds nothing to replace: an
        # empty overwrite would be one more Spark job and Delta commit for no change.
        quarantined = 0
    else:
        quarantined = lakehouse.write(
            rejected,
            QUARANTINE,
            "overwrite",
            partition_by=list(TABLES[QUARANTINE].partition_by),
            partition={INGEST_DATE: day, SOURCE_KIND: kind},
            rows_at_most=rows_in,
        ).rows_written
    report = KindReport(
        files=files.sources,
        not_read=landed.not_read,
        rows_in=rows_in,
        bronze_rows=good_commit.rows_written,
        quarantined_rows=quarantined,
        # A clean day quarantines nothing: no job to count its reasons.
        reasons=_reason_counts(rejected) if quarantined else {},
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
        len(files.files),
        report.bronze_rows,
        table,
        report.quarantined_rows,
    )
    return report


def _quarantine_to_replace(lakehouse: Lakehouse, day: dt.date) -> bool:
    """Whether ``bronze.quarantine`` must be written even if nothing is rejected: it holds
    rows of ``day`` (of either kind, from an earlier run) or does not exist yet (its first
    write creates it). From the Delta log, no data read."""
    if not lakehouse.exists(QUARANTINE):
        return True
    return lakehouse.partition_rows(QUARANTINE, INGEST_DATE).get(str(day), 0) > 0


def _reason_counts(rejected: DataFrame, top: int = 20) -> dict[str, int]:
    """The most frequent quarantine reasons with their counts."""
    rows = (
        rejected.groupBy("reason")
        .count()
        .orderBy("count", "reason", ascending=[False, True])
        .limit(top)
    )
    return {r["reason"]: int(r["count"]) for r in rows.collect()}


# ---------------------------------------------------------------- late-arriving labels
def _not_released() -> list[Column]:
    from pyspark.sql import functions as F

    return [
        F.lit(None).cast("timestamp").alias(RELEASED_AT),
        F.lit(None).cast("string").alias(RELEASED_BY),
    ]


def release_labels(ctx: StageContext, landed: dt.date | None = None) -> dict[str, int]:
    """Check again the labels quarantined because their event was not in
    ``bronze.events``: those whose event has landed since move to ``bronze.labels``.

    A released label lands in the partition of the day it landed (``label_date`` = its
    ingest day, the partition a rerun of that day would put it in), so that day still
    adds up (its rows in = bronze + quarantine, and its quarantine share only falls) and
    rerunning it gives the same rows. It keeps its ``_run_id`` and ``_ingested_at``;
    ``_released_at`` and ``_released_by`` say when and by which run it was released. It
    is judged by the labels' rules of its day again: one whose event has another entity,
    or a later time, stays in quarantine with that reason instead.

    Args:
        landed: the day whose events were just ingested: only the labels of the label
            window after it (the days whose labels its events can belong to) are checked,
            against its events. None: every quarantined label, against all of bronze.

    Returns:
        Labels released per ingest day, ``{"2026-01-14": 3}``; those days' silver.labels
        partitions are to be rebuilt (``regrow labels --date``).
    """
    from pyspark.sql import functions as F

    spark, lakehouse, dataset = ctx.spark, ctx.lakehouse, ctx.settings.dataset
    if not (lakehouse.exists(QUARANTINE) and lakehouse.exists(EVENTS)):
        return {}
    wanted = {
        dt.date.fromisoformat(d) for d, n in lakehouse.partition_rows(QUARANTINE).items() if n
    }
    if landed is not None:
        window = dataset.label_delay_days
        wanted &= {landed + dt.timedelta(days=n) for n in range(1, window + 1)}
    if not wanted:
        return {}
    # One job finds the days holding such a label whose event is there now; only those
    # are judged again (a day whose labels all still wait costs nothing more).
    held = lakehouse.read(
        spark, QUARANTINE, partitions={INGEST_DATE: sorted(wanted), SOURCE_KIND: "labels"}
    ).where(F.col("reason").contains(UNKNOWN_EVENT))
    event = F.from_json("record", f"`{dataset.event_id}` string")[dataset.event_id]
    waiting = held.select(INGEST_DATE, key_in_file(event, dataset).alias("__waiting"))
    events = lakehouse.read(
        spark, EVENTS, partitions=None if landed is None else {EVENT_DATE: landed}
    ).select(F.col(f"`{dataset.event_id}`").alias("__event"))
    found = events.join(F.broadcast(waiting), F.col("__event") == F.col("__waiting"))
    released = {}
    for (day,) in sorted(found.select(INGEST_DATE).distinct().collect()):
        n = _release_day(ctx, day)
        if n:
            released[str(day)] = n
    return released


def _release_day(ctx: StageContext, day: dt.date) -> int:
    """Release the labels of ``day``'s quarantine whose event is now known; returns how many."""
    from pyspark.sql import functions as F

    spark, settings, lakehouse, run_id = ctx.spark, ctx.settings, ctx.lakehouse, ctx.run_id
    dataset = settings.dataset
    types = dataset.label_columns()
    now = dt.datetime.now(dt.UTC)
    where = {INGEST_DATE: day, SOURCE_KIND: "labels"}
    # Materialised: the partition read here is replaced below.
    held = lakehouse.read(spark, QUARANTINE, partitions=where).localCheckpoint(eager=True)
    retried = F.col("reason").contains(UNKNOWN_EVENT)
    recomputed = (SOURCE_KIND, "source_file", "reason", "record", INGEST_DATE)
    kept_meta = [c for c in held.columns if c not in recomputed]  # _run_id, _ingested_at...
    record = F.from_json("record", ", ".join(f"`{c}` string" for c in types))
    nothing = F.lit(None).cast("string")
    raw = held.where(retried).select(
        *[record[c].alias(c) for c in types],
        *[nothing.alias(c) for c in (CORRUPT, RAW, MISSING_COLUMNS, EXTRA_COLUMNS)],
        F.col("source_file").alias(SOURCE_FILE),
        *[F.col(f"`{c}`").alias(f"__q_{c}") for c in kept_meta],
    )
    raw = with_known_events(raw, lakehouse, dataset, day)
    good, rejected, parsed = split_rows(
        raw, types, [dataset.event_id, dataset.label, dataset.label_timestamp],
        label_rules(dataset, day), dedupe_key=dataset.event_id,
        latest_by=dataset.label_timestamp, dataset=dataset,
    )  # fmt: skip
    good, failing = split_invalid_rows(
        good, suite_for(settings, LABELS), runtime_parameters(day, now=now), checkpoint=False
    )
    if lakehouse.partition_rows(LABELS).get(str(day)):
        # Released by a run that stopped before it cleared the quarantine: already there.
        there = lakehouse.read(spark, LABELS, partitions={LABEL_DATE: day})
        there = there.select(F.col(f"`{dataset.event_id}`").alias("__there"))
        good = good.join(
            F.broadcast(there), good[dataset.event_id] == there["__there"], "left_anti"
        )
    good = good.localCheckpoint(eager=True)
    n_released = good.count()
    as_json = F.to_json(F.struct(*[F.col(f"`{c}`").cast("string").alias(c) for c in types]))
    still = rejected.unionByName(
        failing.select(F.col(SOURCE_FILE).alias("source_file"), "reason", as_json.alias("record"),
                       *[f"__q_{c}" for c in kept_meta]),
        allowMissingColumns=True,
    ).select(
        F.lit("labels").alias(SOURCE_KIND), "source_file", "reason", "record",
        *[F.col(f"__q_{c}").alias(c) for c in kept_meta], F.lit(day).alias(INGEST_DATE),
    ).localCheckpoint(eager=True)  # fmt: skip
    changed = still.where(~retried).count()  # their event is known now, but they break a rule
    if not n_released and not changed and still.count() == sum(parsed.values()):
        return 0  # every one still waits for its event: nothing to rewrite
    if n_released:
        lakehouse.write(
            good.select(
                *types, F.lit(day).alias(LABEL_DATE), F.col(EXTRA_COLUMNS), F.col(SOURCE_FILE),
                F.col(f"__q_{INGESTED_AT}").alias(INGESTED_AT),
                F.col(f"__q_{RUN_ID}").alias(RUN_ID),
                F.lit(now).cast("timestamp").alias(RELEASED_AT), F.lit(run_id).alias(RELEASED_BY),
            ),
            LABELS, "append", partition_by=[LABEL_DATE], rows_at_most=n_released,
        )  # fmt: skip
    commit = lakehouse.write(
        held.where(~retried).unionByName(still.select(*held.columns)),
        QUARANTINE,
        "overwrite",
        partition_by=list(TABLES[QUARANTINE].partition_by),
        partition=where,
        # the day's quarantine of both kinds, from the Delta log: an upper bound, no job
        rows_at_most=lakehouse.partition_rows(QUARANTINE, INGEST_DATE).get(str(day), 0),
    )
    logger.info(
        "%s: %d quarantined label(s) released to %s (their event has landed), %d still held",
        day, n_released, LABELS, commit.rows_written,
    )  # fmt: skip
    return n_released
