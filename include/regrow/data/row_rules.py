"""The contract's row rules beyond types: keys that stay keys, clean text, valid values.

Each rule is a pair of functions building the failing condition and the quarantine
reason (the ``checks`` of :func:`regrow.data.ingest.split_rows`), or, for text, a reason
that is null when the value is fine. Column names come from the ``dataset`` contract.

- keys (event id, entity id) lose surrounding whitespace (``key_whitespace: trim``) or
  the row is rejected (``reject``): ``" c1"`` is never a second entity;
- text may not hold control characters other than tab, line feed and carriage return
  (a quoted CSV field may span lines), nor be longer than ``max_string_length``;
- numeric features stay within ``value_ranges``; categorical ones within
  ``allowed_values`` when ``unknown_categories: reject``;
- an event id already in ``bronze.events`` on an earlier day is a duplicate
  (:func:`with_earlier_events`), as is one repeated within the day;
- a label's event has the label's entity (when the label file carries it), and the label
  did not arrive before its event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING

from regrow.catalog import EVENT_DATE, EVENTS, SOURCE_FILE
from regrow.settings import DatasetSettings
from regrow.storage.session import one_task_if_small

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from regrow.storage.lakehouse import Lakehouse

# C0 control characters and DEL, except tab, line feed and carriage return.
_CONTROL = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F]"
# Working columns carried into split_rows: where an event id first landed, and the event
# a label belongs to.
FIRST_LANDED = "__first_landed"
EVENT_ENTITY, EVENT_TIME = "__event_entity", "__event_time"
# The history-to-day ratio of rows above which the duplicate lookup semi-joins the day's
# ids before aggregating the history: one more pass over the day, for an aggregate of the
# day's ids only (`make bench`'s duplicate_lookup, 2,000 ids a day, 2026-12-05, seconds
# with the whole history aggregated / semi-joined: 150 days 1.22 / 0.77, 300 days
# 1.91 / 1.16; up to 50 days the aggregate of the whole history took 0.34-0.56 s, and a
# first run measured no gain there).
SEMI_JOIN_HISTORY_RATIO = 50


# Whitespace around a key: Unicode White_Space (spaces, tabs, line breaks, no-break space).
WHITESPACE = "".join(
    [
        *"\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000",
        *map(chr, range(0x2000, 0x200B)),
    ]
)


def strip_key(value: Column) -> Column:
    """``value`` without surrounding whitespace (one pass, no regex)."""
    from pyspark.sql import functions as F

    return F.btrim(value, F.lit(WHITESPACE))


def key_in_file(value: Column, dataset: DatasetSettings) -> Column:
    """A key as landed, as it is compared and stored (trimmed unless keys are rejected)."""
    return strip_key(value) if dataset.key_whitespace == "trim" else value


def suspect_text(values: list[Column], dataset: DatasetSettings, clean: bool = False) -> Column:
    """Whether any of a row's text ``values`` may break a text rule: one regex over their
    concatenation per row, so the exact per-column rules only run on the rare row that
    does (five regexes per row made a day's parse a third slower). ``clean``: the bytes
    of the files showed no control character and no over-long line, so no row is."""
    from pyspark.sql import functions as F

    if dataset.key_whitespace == "reject":
        return F.lit(True)  # keys are checked on their own
    if clean:
        return F.lit(False)
    joined = F.concat_ws("", *values)
    suspect = joined.rlike(_CONTROL)
    if dataset.max_string_length is not None:
        suspect = suspect | (F.length(joined) > dataset.max_string_length)
    return suspect


def text_reasons(
    column: str, value: Column, dataset: DatasetSettings, key: bool, suspect: Column
) -> Column:
    """Why a landed text value ``value`` of ``column`` is rejected, or null: whitespace
    around a key (with ``key_whitespace: reject``), a control character, or more
    characters than ``max_string_length``. Only worked out when ``suspect``."""
    from pyspark.sql import functions as F

    shown = F.to_json(F.array(value))
    out = []
    if key and dataset.key_whitespace == "reject":
        out.append(
            F.when(
                (strip_key(value) != value) & (strip_key(value) != ""),
                F.concat(
                    F.lit(f"{column}: "),
                    shown,
                    F.lit(" has whitespace around it (dataset.key_whitespace: reject)"),
                ),
            )
        )
    control = F.regexp_extract(value, f"({_CONTROL})", 1)
    out.append(
        F.when(
            value.rlike(_CONTROL),
            F.concat(
                F.lit(f"{column}: control character "),
                F.format_string("U+%04X", F.ascii(control)),
                F.lit(" in the value (only tab and line breaks are allowed in text)"),
            ),
        )
    )
    if dataset.max_string_length is not None:
        limit = dataset.max_string_length
        out.append(
            F.when(
                F.length(value) > limit,
                F.concat(
                    F.lit(f"{column}: "),
                    F.length(value).cast("string"),
                    F.lit(
                        f" characters, longer than the maximum {limit} (dataset.max_string_length)"
                    ),
                ),
            )
        )
    return F.when(suspect, F.nullif(F.concat_ws("; ", *out), F.lit("")))


def value_rules(dataset: DatasetSettings) -> list:
    """Rules of ``value_ranges`` and, with ``unknown_categories: reject``, ``allowed_values``."""
    from pyspark.sql import functions as F

    rules = []
    for column, bounds in dataset.value_ranges.items():
        value = F.col(f"`{column}`")
        for bound, word, outside in (
            (bounds.min, "below the minimum", lambda v, b: v < F.lit(b)),
            (bounds.max, "above the maximum", lambda v, b: v > F.lit(b)),
        ):
            if bound is None:
                continue
            rules.append(
                (
                    lambda v=value, b=bound, o=outside: v.isNotNull() & o(v, b),
                    lambda c=column, v=value, w=word, b=bound: F.concat(
                        F.lit(f"{c}: "), v.cast("string"), F.lit(f" is {w} {b:g}")
                    ),
                )
            )
    if dataset.unknown_categories == "reject":
        for column, allowed in dataset.allowed_values.items():
            value = F.col(f"`{column}`")
            rules.append(
                (
                    lambda v=value, a=allowed: v.isNotNull() & ~v.isin(list(a)),
                    lambda c=column, v=value, a=allowed: F.concat(
                        F.lit(f"{c}: "),
                        F.to_json(F.array(v)),
                        F.lit(f" is not an allowed value {_shown(a)} (dataset.allowed_values)"),
                    ),
                )
            )
    return rules


def _shown(values: list[str], first: int = 10) -> str:
    more = f", ... {len(values) - first} more" if len(values) > first else ""
    return "[" + ", ".join(values[:first]) + more + "]"


def duplicate_rule(dataset: DatasetSettings) -> tuple:
    """An event whose id :func:`with_earlier_events` found on an earlier day."""
    from pyspark.sql import functions as F

    first = F.col(FIRST_LANDED)
    return (
        lambda: first.isNotNull(),
        lambda: F.concat(
            F.lit(f"duplicate {dataset.event_id} (first landed in "),
            first[SOURCE_FILE],
            F.lit(f", in {EVENTS} on "),
            first[EVENT_DATE].cast("string"),
            F.lit(")"),
        ),
    )


def with_earlier_events(
    raw: DataFrame,
    lakehouse: Lakehouse,
    dataset: DatasetSettings,
    day: dt.date,
    day_rows: int | None = None,
) -> DataFrame:
    """``raw`` events with ``__first_landed`` (the ``event_date`` and ``_source_file`` of
    the same id in ``bronze.events``), looked up on the days before ``day`` within
    ``duplicate_lookback_days`` (all of them when null). ``day``'s own partition is left
    out, so that rerunning a day does not find its own rows.

    Only the id, day and file columns of those partitions are read; their ids are
    aggregated to one row each (a hash aggregate), then joined (Spark broadcasts them
    when they are few). When those partitions hold more than
    :data:`SEMI_JOIN_HISTORY_RATIO` times the day's ``day_rows`` (its landed records), only
    the earlier rows of the day's ids are aggregated: a semi join with them ahead of the
    aggregate, which costs one more pass over the day but spares hashing the whole history
    (`make bench`'s ``duplicate_lookup``). When the history holds more rows than the day,
    only its days whose ids may match are read (:func:`_days_that_may_hold`).
    """
    from pyspark.sql import functions as F

    lookback = dataset.duplicate_lookback_days
    first = None if lookback is None else day - dt.timedelta(days=lookback)
    history = {
        dt.date.fromisoformat(d): n
        for d, n in lakehouse.partition_rows(EVENTS, EVENT_DATE).items()
        if n
        and dt.date.fromisoformat(d) < day
        and (first is None or dt.date.fromisoformat(d) >= first)
    }
    key = key_in_file(raw[f"`{dataset.event_id}`"], dataset)
    if day_rows is not None and sum(history.values()) > day_rows:
        history = {
            d: history[d] for d in _days_that_may_hold(raw, key, lakehouse, dataset, history)
        }
    days = sorted(history)
    if not days:
        kind = f"struct<{EVENT_DATE}:date,{SOURCE_FILE}:string>"
        return raw.withColumn(FIRST_LANDED, F.lit(None).cast(kind))
    earlier = one_task_if_small(
        lakehouse.read(raw.sparkSession, EVENTS, partitions={EVENT_DATE: days}),
        sum(history[d] for d in days),
    )
    earlier_id = earlier[f"`{dataset.event_id}`"]
    if day_rows is not None and sum(history.values()) > SEMI_JOIN_HISTORY_RATIO * day_rows:
        wanted = raw.select(key.alias("__wanted"))  # broadcast when the day is small
        earlier = earlier.join(wanted, earlier_id == wanted["__wanted"], "left_semi")
    landed = earlier.groupBy(earlier_id.alias("__earlier_id")).agg(
        F.min(F.struct(F.col(EVENT_DATE), F.col(SOURCE_FILE))).alias(FIRST_LANDED)
    )
    return raw.join(landed, key == landed["__earlier_id"], "left").drop("__earlier_id")


def _days_that_may_hold(
    raw: DataFrame,
    key: Column,
    lakehouse: Lakehouse,
    dataset: DatasetSettings,
    days: Iterable[dt.date],
) -> list[dt.date]:
    """The ``days`` whose ``bronze.events`` files may hold one of ``raw``'s ids: the Delta
    log's statistics bound each day's ids, and a day whose range misses the landed day's
    range is not read. Ids that grow with time (sequence numbers, ULIDs, snowflake ids)
    leave no earlier day to read unless one was landed again; random ids leave every day,
    for the cost of one pass over the landed day (so it is paid only when the history
    holds more rows than the day)."""
    from pyspark.sql import functions as F

    low, high = raw.select(F.min(key), F.max(key)).first()
    if low is None:  # no id to look up
        return []
    bounds = lakehouse.partition_bounds(EVENTS, dataset.event_id, EVENT_DATE)

    def may_hold(day: dt.date) -> bool:
        known = bounds.get(str(day), ())
        if known is None:  # its files' statistics do not bound the ids
            return True
        if not known:  # its files hold no id
            return False
        least, greatest = known
        if not isinstance(least, type(low)):  # bounds of another type: read it
            return True
        return least <= high and low <= greatest

    return [d for d in days if may_hold(d)]


def event_match_rules(dataset: DatasetSettings) -> list:
    """Rules of a label against its event (``__event_entity``, ``__event_time`` set by
    :func:`regrow.data.ingest.with_known_events`): the same entity, when the label file
    carries it, and a label time not before the event's time."""
    from pyspark.sql import functions as F

    event = F.col(f"`{dataset.event_id}`")
    ts = F.col(f"`{dataset.label_timestamp}`")
    rules = [
        (
            lambda: ts.isNotNull() & (ts < F.col(EVENT_TIME)),
            lambda: F.concat(
                F.lit(f"{dataset.label_timestamp} "),
                ts.cast("string"),
                F.lit(f" is before its event's {dataset.event_timestamp} "),
                F.col(EVENT_TIME).cast("string"),
            ),
        )
    ]
    if dataset.entity_id is not None:
        entity = F.col(f"`{dataset.entity_id}`")
        rules.append(
            (
                lambda: (
                    entity.isNotNull()
                    & F.col(EVENT_ENTITY).isNotNull()
                    & (entity != F.col(EVENT_ENTITY))
                ),
                lambda: F.concat(
                    F.lit(f"{dataset.entity_id} "),
                    entity,
                    F.lit(f" is not the entity of {dataset.event_id} "),
                    event,
                    F.lit(" (its event has "),
                    F.col(EVENT_ENTITY),
                    F.lit(")"),
                ),
            )
        )
    return rules
