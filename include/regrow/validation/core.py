"""Great Expectations guards every table: suites from the contract, run on Spark.

- **Suites** are generated from the ``dataset`` contract (:func:`build_suite`), written as
  reviewable JSON under ``expectations/`` (:func:`write_suites`) and read back at run time
  (:func:`load_suite`): the files in git are the source of truth, generation is a command.
- **Runtime parameters**: what depends on the day being validated is a GX suite parameter
  (``{"$PARAMETER": "day_start"}``) filled at validation time, so one suite file serves every
  partition: the partition's day (``day_start``/``day_end``, capped at *now* so a timestamp
  in the future fails) and row-count bounds from recent partitions (``row_count_min``/``max``).
- **Severity**: every expectation carries ``meta={"severity": "critical"|"warning",
  "row_level": bool}``. A critical failure raises :class:`ValidationError` naming the table,
  partition, expectation, column and a sample of offending values; a warning is recorded.
- **Row-level isolation**: expectations marked ``row_level`` are translated into Spark
  predicates (:func:`row_predicates`, the one place), so :func:`split_invalid_rows` moves the
  rows that break them aside, with a reason, before the table-level validation.
- **Runs on Spark** through GX's Spark datasource (dataframe asset, whole-dataframe batch,
  a Checkpoint with an ``UpdateDataDocsAction``): data is never collected to pandas. Data Docs
  are static HTML under ``{reports_dir}/data_docs/``; validation results are kept under
  ``{reports_dir}/gx/validations/`` so the Data Docs index lists past runs too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlparse

from regrow.catalog import (
    ALIASES,
    BRONZE_TABLES,
    DAY,
    EVENT_DATE,
    EVENTS,
    INGEST_DATE,
    INGESTED_AT,
    LABEL_DATE,
    LABELS,
    MODEL_ALIAS,
    MODEL_NAME,
    MODEL_VERSION,
    PREDICTIONS,
    QUARANTINE,
    RUN_ID,
    SCORE,
    SECONDS_SINCE_PRIOR,
    SILVER_LABELS,
    SOURCE_FILE,
    SOURCE_KIND,
    SOURCE_VERSION,
    SOURCE_VERSIONS,
    SOURCES,
    TABLE,
    TABLES,
    VALIDATION,
    derived_columns,
    label_columns,
    prediction_columns,
)
from regrow.catalog import FEATURES as SILVER_FEATURES
from regrow.settings import DatasetSettings, FeatureSettings, Settings

if TYPE_CHECKING:
    import great_expectations as gx
    from pyspark.sql import Column, DataFrame

    from regrow.storage.lakehouse import Lakehouse

logger = logging.getLogger(__name__)

Severity = Literal["critical", "warning"]
CRITICAL: Severity = "critical"
WARNING: Severity = "warning"

# Runtime suite parameters (filled by :func:`runtime_parameters`).
DAY_START = "day_start"
DAY_END = "day_end"
ROW_COUNT_MIN = "row_count_min"
ROW_COUNT_MAX = "row_count_max"
MAX_QUARANTINED = "max_quarantined"
# Rows of the bronze partition a silver partition was built from: nothing may be lost.
SOURCE_ROWS = "source_rows"

# A feature may be null in at most 5% of a day's rows before the day is flagged.
DEFAULT_NOT_NULL_MOSTLY = 0.95
# A day outside [median / 5, median * 5] of recent days' row counts is flagged.
DEFAULT_ROW_COUNT_FACTOR = 5.0
# How many offending values a result (and an error message) carries.
SAMPLE_SIZE = 5
# SUMMARY: counts plus a few offending values per expectation (the error message needs
# them); GX's unexpected_index_list / unexpected_rows stay off: on Spark each is one more
# job over the data per expectation, and offending rows are isolated by split_invalid_rows.
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": SAMPLE_SIZE,
    "include_unexpected_rows": False,
    "return_unexpected_index_query": False,
}
DATA_DOCS_SITE = "regrow"
# Newest validation results listed on the Data Docs index (older pages stay on disk).
DATA_DOCS_INDEX_LIMIT = 500

# Logical contract types -> Spark type names GX checks the column schema against.
_SPARK_TYPES = {
    "string": ["StringType"],
    "timestamp": ["TimestampType", "TimestampNTZType"],
    "double": ["DoubleType"],
    "boolean": ["BooleanType"],
    "int": ["IntegerType", "LongType"],
    "long": ["LongType", "IntegerType"],
    "date": ["DateType"],
}
_META_COLUMNS = {SOURCE_FILE: "string", INGESTED_AT: "timestamp", RUN_ID: "string"}


class ValidationError(RuntimeError):
    """A table partition failed a critical expectation; ``outcome`` has every result."""

    def __init__(self, message: str, outcome: ValidationOutcome) -> None:
        super().__init__(message)
        self.outcome = outcome


class SuiteError(ValueError):
    """A suite file or expectation configuration regrow cannot use as written."""


# ---------------------------------------------------------------------------- suites
Expectations = Callable[[DatasetSettings, Mapping[str, Sequence[str]], FeatureSettings], list]


def _expect(kind: str, severity: Severity, row_level: bool = False, **kwargs: Any):
    """An expectation of GX class ``kind`` with regrow's severity metadata (GX's own
    ``severity`` field is set to match, so Data Docs shows it too)."""
    import great_expectations as gx

    cls = getattr(gx.expectations, kind)
    return cls(**kwargs, severity=severity, meta={"severity": severity, "row_level": row_level})


def _param(name: str) -> dict[str, str]:
    return {"$PARAMETER": name}


def _schema_expectations(columns: Mapping[str, str]) -> list:
    out = [
        _expect(
            "ExpectTableColumnsToMatchSet", CRITICAL, column_set=list(columns), exact_match=False
        )
    ]
    out += [
        _expect("ExpectColumnValuesToBeInTypeList", CRITICAL, column=c, type_list=_SPARK_TYPES[t])
        for c, t in columns.items()
    ]
    return out


def _not_null(columns: Sequence[str]) -> list:
    return [_expect("ExpectColumnValuesToNotBeNull", CRITICAL, True, column=c) for c in columns]


def _row_count() -> list:
    return [
        _expect(
            "ExpectTableRowCountToBeBetween",
            WARNING,
            min_value=_param(ROW_COUNT_MIN),
            max_value=_param(ROW_COUNT_MAX),
        )
    ]


def _event_expectations(
    dataset: DatasetSettings, allowed_values: Mapping[str, Sequence[str]], _: FeatureSettings
) -> list:
    columns = {**dataset.event_columns(), EVENT_DATE: "date", **_META_COLUMNS}
    out = _schema_expectations(columns)
    # A day without a single event is a missing or empty feed, not a quiet day.
    out.append(_expect("ExpectTableRowCountToBeBetween", CRITICAL, min_value=1))
    out += _not_null([dataset.event_id, dataset.entity_id, dataset.event_timestamp])
    out.append(_expect("ExpectColumnValuesToBeUnique", CRITICAL, column=dataset.event_id))
    # On the partition's day, and not in the future (day_end is capped at validation time).
    out.append(
        _expect(
            "ExpectColumnValuesToBeBetween",
            CRITICAL,
            True,
            column=dataset.event_timestamp,
            min_value=_param(DAY_START),
            max_value=_param(DAY_END),
            strict_max=True,
        )
    )
    # A null feature is allowed (the model imputes); many nulls mean a broken feed.
    out += [
        _expect("ExpectColumnValuesToNotBeNull", WARNING, column=c, mostly=DEFAULT_NOT_NULL_MOSTLY)
        for c in dataset.features
    ]
    # A category outside the allowed set is recorded, not rejected: a new value is drift
    # for monitoring to measure, and the row is still a valid event.
    for column, values in allowed_values.items():
        if column not in dataset.categorical_features:
            raise SuiteError(
                f"allowed_values names {column!r}, which is not a categorical feature of the "
                f"contract ({dataset.categorical_features})"
            )
        out.append(
            _expect("ExpectColumnValuesToBeInSet", WARNING, column=column, value_set=list(values))
        )
    return out + _row_count()


def _label_expectations(dataset: DatasetSettings, *_: Any) -> list:
    columns = {**dataset.label_columns(), LABEL_DATE: "date", **_META_COLUMNS}
    out = _schema_expectations(columns)
    out += _not_null([dataset.event_id, dataset.label, dataset.label_timestamp])
    # Ingest keeps one label per event and day.
    out.append(_expect("ExpectColumnValuesToBeUnique", CRITICAL, column=dataset.event_id))
    out.append(
        _expect(
            "ExpectColumnValuesToBeInSet",
            CRITICAL,
            True,
            column=dataset.label,
            value_set=list(dataset.label_values),
        )
    )
    # A label may land days after it arrived (a late file), but never before: only an
    # upper bound, the end of the landing day (capped at now).
    out.append(
        _expect(
            "ExpectColumnValuesToBeBetween",
            CRITICAL,
            True,
            column=dataset.label_timestamp,
            max_value=_param(DAY_END),
            strict_max=True,
        )
    )
    return out + _row_count()


def _quarantine_expectations(dataset: DatasetSettings, *_: Any) -> list:
    """Quarantine is where bad rows go; too many of them in a day means the feed is broken
    and the day is blocked (the bound is a share of the day's landed rows)."""
    columns = {
        SOURCE_KIND: "string",
        "source_file": "string",
        "reason": "string",
        "record": "string",
        INGEST_DATE: "date",
    }
    return [
        *_schema_expectations(columns),
        _expect(
            "ExpectTableRowCountToBeBetween",
            CRITICAL,
            min_value=0,
            max_value=_param(MAX_QUARANTINED),
        ),
    ]


def _source_rows() -> list:
    """Exactly as many rows as the bronze partition the silver one was built from."""
    return [
        _expect("ExpectTableRowCountToEqual", CRITICAL, value=_param(SOURCE_ROWS)),
    ]


def _silver_feature_expectations(
    dataset: DatasetSettings, _: Mapping[str, Sequence[str]], features: FeatureSettings
) -> list:
    """One row per bronze event of the day, keys present, and window aggregates that are
    counts of earlier events (never negative, never counting the event itself)."""
    derived = derived_columns(features)
    columns = {
        **dataset.event_columns(),
        **derived,
        EVENT_DATE: "date",
        SOURCE_VERSION: "long",
        RUN_ID: "string",
    }
    out = _schema_expectations(columns)
    out += _source_rows()
    out += _not_null([dataset.event_id, dataset.entity_id, dataset.event_timestamp])
    out.append(_expect("ExpectColumnValuesToBeUnique", CRITICAL, column=dataset.event_id))
    out.append(
        _expect(
            "ExpectColumnValuesToBeBetween",
            CRITICAL,
            column=dataset.event_timestamp,
            min_value=_param(DAY_START),
            max_value=_param(DAY_END),
            strict_max=True,
        )
    )
    counts = [c for c, t in derived.items() if t == "long"]
    out += _not_null(counts)
    out += [
        _expect("ExpectColumnValuesToBeBetween", CRITICAL, column=c, min_value=0) for c in counts
    ]
    # Strictly earlier: a previous event is at least a microsecond before.
    out.append(
        _expect(
            "ExpectColumnValuesToBeBetween",
            CRITICAL,
            column=SECONDS_SINCE_PRIOR,
            min_value=0,
            strict_min=True,
        )
    )
    return out + _row_count()


def _silver_label_expectations(dataset: DatasetSettings, *_: Any) -> list:
    """Every bronze label of the landing day joined to its event; a label never arrives
    before its event."""
    columns = {**label_columns(dataset), SOURCE_VERSIONS: "string", RUN_ID: "string"}
    out = _schema_expectations(columns)
    out += _source_rows()
    out += _not_null(
        [dataset.event_id, dataset.entity_id, dataset.event_timestamp, dataset.label,
         dataset.label_timestamp]
    )  # fmt: skip
    out.append(_expect("ExpectColumnValuesToBeUnique", CRITICAL, column=dataset.event_id))
    out.append(
        _expect(
            "ExpectColumnValuesToBeInSet",
            CRITICAL,
            column=dataset.label,
            value_set=list(dataset.label_values),
        )
    )
    out.append(
        _expect(
            "ExpectColumnPairValuesAToBeGreaterThanB",
            CRITICAL,
            column_A=dataset.label_timestamp,
            column_B=dataset.event_timestamp,
            or_equal=True,
        )
    )
    return out


def _prediction_expectations(dataset: DatasetSettings, *_: Any) -> list:
    """Scores are probabilities; every event of the day has exactly one champion row (and
    at most one shadow row); keys and the model that scored are never null."""
    from great_expectations.expectations.row_conditions import Column as GxColumn

    champion_rows = GxColumn(MODEL_ALIAS) == ALIASES[0]
    out = _schema_expectations(prediction_columns(dataset))
    out += _not_null(
        [dataset.event_id, dataset.entity_id, dataset.event_timestamp, SCORE, MODEL_NAME,
         MODEL_VERSION, MODEL_ALIAS]
    )  # fmt: skip
    out += [
        _expect("ExpectColumnValuesToBeBetween", CRITICAL, column=SCORE, min_value=0, max_value=1),
        _expect("ExpectColumnValuesToBeInSet", CRITICAL, column=MODEL_ALIAS,
                value_set=list(ALIASES)),
        _expect("ExpectCompoundColumnsToBeUnique", CRITICAL,
                column_list=[dataset.event_id, MODEL_ALIAS]),
        # As many champion rows as silver.features has events that day: none missed.
        _expect("ExpectTableRowCountToEqual", CRITICAL, value=_param(SOURCE_ROWS),
                row_condition=champion_rows),
    ]  # fmt: skip
    return out


# The tables that have a suite, and the function listing each one's expectations (from
# the contract, the allowed category values and the feature settings).
SUITES: dict[str, Expectations] = {
    EVENTS: _event_expectations,
    LABELS: _label_expectations,
    QUARANTINE: _quarantine_expectations,
    SILVER_FEATURES: _silver_feature_expectations,
    SILVER_LABELS: _silver_label_expectations,
    PREDICTIONS: _prediction_expectations,
}


def build_suite(
    dataset: DatasetSettings,
    table: str,
    allowed_values: Mapping[str, Sequence[str]] | None = None,
    features: FeatureSettings | None = None,
) -> gx.ExpectationSuite:
    """The expectation suite of ``table``, generated from the schema contract.

    Args:
        allowed_values: ``{categorical column: allowed values}``; absent columns get no
            value-set expectation (nothing is derived from data).
        features: the feature settings silver.features is built with (default: defaults).
    """
    import great_expectations as gx

    if table not in SUITES:
        raise SuiteError(f"no suite is defined for table {table!r} (known: {sorted(SUITES)})")
    expectations = SUITES[table](
        dataset, allowed_values or {}, features or FeatureSettings()
    )
    return gx.ExpectationSuite(
        name=table,
        expectations=expectations,
        meta={
            "table": table,
            "partition_column": TABLES[table].date_column,
            "generated_from": f"params.yaml dataset {dataset.name}",
            "runtime_parameters": [
                DAY_START,
                DAY_END,
                ROW_COUNT_MIN,
                ROW_COUNT_MAX,
                MAX_QUARANTINED,
                SOURCE_ROWS,
            ],
        },
    )


def suite_path(directory: str | os.PathLike[str], table: str) -> Path:
    """Where ``table``'s suite lives: ``{directory}/{table}.json``."""
    return Path(directory) / f"{table}.json"


def write_suites(
    dataset: DatasetSettings,
    directory: str | os.PathLike[str],
    allowed_values: Mapping[str, Sequence[str]] | None = None,
    features: FeatureSettings | None = None,
) -> list[Path]:
    """Write every table's generated suite as reviewable JSON; returns the files written."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    written = []
    for table in SUITES:
        path = suite_path(directory, table)
        suite = build_suite(dataset, table, allowed_values, features)
        path.write_text(_suite_json(suite), encoding="utf-8")
        written.append(path)
        logger.info("wrote suite %s", path)
    return written


def _suite_json(suite: gx.ExpectationSuite) -> str:
    raw = suite.to_json_dict()
    raw.pop("id", None)  # a store's identity, not part of the reviewed contract
    for expectation in raw["expectations"]:
        expectation.pop("id", None)
    return json.dumps(raw, indent=2) + "\n"


def load_suite(path: str | os.PathLike[str]) -> gx.ExpectationSuite:
    """Read a suite file; an expectation GX or regrow cannot use is an error naming it
    (GX alone would log it and drop it from the suite)."""
    import great_expectations as gx

    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise SuiteError(f"{path}: not a readable suite file: {err}") from err
    raw.pop("id", None)
    configs = raw.get("expectations", [])
    for i, config in enumerate(configs):
        config.pop("id", None)
        meta = config.get("meta") or {}
        where = f"{path}: expectation {i} ({config.get('type')})"
        if meta.get("severity") not in (CRITICAL, WARNING):
            raise SuiteError(f"{where}: meta.severity must be 'critical' or 'warning'")
        if not isinstance(meta.get("row_level"), bool):
            raise SuiteError(f"{where}: meta.row_level must be true or false")
    suite = gx.ExpectationSuite(**raw)
    if len(suite.expectations) != len(configs):
        loaded = {e.configuration.to_json_dict()["type"] for e in suite.expectations}
        dropped = [c.get("type") for c in configs if c.get("type") not in loaded]
        raise SuiteError(f"{path}: invalid expectation configuration(s) {dropped or configs}")
    return suite


# ------------------------------------------------------------------- runtime parameters
def row_count_bounds(
    recent_counts: Sequence[int], factor: float = DEFAULT_ROW_COUNT_FACTOR
) -> tuple[int, int | None]:
    """Row-count bounds from recent partitions' counts: ``[median/factor, median*factor]``.

    With no history, at least one row and no upper bound (an empty day is still flagged).
    The median, not the mean, so one broken day in the window does not move the bounds.
    """
    counts = [c for c in recent_counts if c > 0]
    if not counts:
        return 1, None
    median = statistics.median(counts)
    return max(1, math.floor(median / factor)), math.ceil(median * factor)


def recent_row_counts(lakehouse: Lakehouse, table: str, day: dt.date, days: int = 7) -> list[int]:
    """Row counts of ``table``'s partitions in the ``days`` before ``day``, from the Delta
    log's file statistics (no data is read); days without a partition are left out."""
    counts = partition_counts(lakehouse, table)
    wanted = [str(day - dt.timedelta(days=n)) for n in range(days, 0, -1)]
    return [counts[d] for d in wanted if d in counts]


def partition_counts(lakehouse: Lakehouse, table: str) -> dict[str, int]:
    """Rows per day partition of ``table`` (``{"2026-01-01": n}``), from the Delta log's
    file statistics; empty if the table does not exist."""
    return lakehouse.partition_rows(table, TABLES[table].date_column)


def partition_day(partition: Mapping[str, Any]) -> dt.date:
    """The day a ``{date_column: day}`` partition spec names."""
    days = [v for v in partition.values() if isinstance(v, dt.date | str)]
    if len(days) != 1:
        raise ValueError(f"partition {dict(partition)} must name exactly one day")
    value = days[0]
    if isinstance(value, dt.datetime):
        return value.date()
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def runtime_parameters(
    day: dt.date,
    recent_counts: Sequence[int] = (),
    now: dt.datetime | None = None,
    row_count_factor: float = DEFAULT_ROW_COUNT_FACTOR,
) -> dict[str, Any]:
    """Values of the suites' ``$PARAMETER``s for one day (UTC instants).

    ``day_end`` is the end of the day or ``now``, whichever is earlier: a timestamp after it
    is on another day or in the future.
    """
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
    low, high = row_count_bounds(recent_counts, row_count_factor)
    return {
        DAY_START: start,
        DAY_END: min(start + dt.timedelta(days=1), now),
        ROW_COUNT_MIN: low,
        ROW_COUNT_MAX: high,
    }


def _resolve(value: Any, parameters: Mapping[str, Any], where: str) -> Any:
    if isinstance(value, dict) and "$PARAMETER" in value:
        name = value["$PARAMETER"]
        if name not in parameters:
            raise SuiteError(f"{where}: no value for suite parameter {name!r}")
        return parameters[name]
    return value


# ------------------------------------------------------------------------- row level
@dataclass(frozen=True)
class RowPredicate:
    """A row-level expectation as Spark: ``violated`` is true on an offending row, and
    ``reason`` says why (``expect_column_values_to_be_in_set(is_fraud): 2 not in [0, 1]``)."""

    expectation: str
    column: str
    violated: Column
    reason: Column


def _config(expectation) -> tuple[str, dict[str, Any], dict[str, Any]]:
    config = expectation.configuration
    return config.type, dict(config.kwargs), dict(config.meta or {})


def row_predicates(
    suite: gx.ExpectationSuite, parameters: Mapping[str, Any] | None = None
) -> list[RowPredicate]:
    """Spark predicates for the suite's ``row_level`` expectations, with GX's semantics:
    a null is unexpected only to ``not_be_null``; ``in_set`` and ``between`` skip nulls."""
    from pyspark.sql import functions as F

    parameters = parameters or {}
    out = []
    for expectation in suite.expectations:
        kind, kwargs, meta = _config(expectation)
        if not meta.get("row_level"):
            continue
        name = f"{kind}({kwargs.get('column')})"
        if kwargs.get("mostly", 1) != 1:
            raise SuiteError(f"{suite.name}: {name} is row_level but allows failures (mostly)")
        if kind not in _ROW_PREDICATES:
            raise SuiteError(
                f"{suite.name}: {name} is row_level but has no row predicate "
                f"(supported: {sorted(_ROW_PREDICATES)})"
            )
        kwargs = {k: _resolve(v, parameters, f"{suite.name}: {name}") for k, v in kwargs.items()}
        violated, why = _ROW_PREDICATES[kind](kwargs)
        out.append(
            RowPredicate(kind, kwargs["column"], violated, F.concat(F.lit(f"{name}: "), why))
        )
    return out


def _null_row(kwargs: dict[str, Any]) -> tuple[Column, Column]:
    from pyspark.sql import functions as F

    return F.col(f"`{kwargs['column']}`").isNull(), F.lit("null")


def _in_set_row(kwargs: dict[str, Any], negate: bool = False) -> tuple[Column, Column]:
    from pyspark.sql import functions as F

    col, values = F.col(f"`{kwargs['column']}`"), list(kwargs["value_set"])
    inside = col.isin(values)
    shown = f" {'in' if negate else 'not in'} {json.dumps(values, default=str)}"
    return col.isNotNull() & (inside if negate else ~inside), F.concat(
        col.cast("string"), F.lit(shown)
    )


def _between_row(kwargs: dict[str, Any]) -> tuple[Column, Column]:
    from pyspark.sql import functions as F

    col = F.col(f"`{kwargs['column']}`")
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    strict_min, strict_max = kwargs.get("strict_min", False), kwargs.get("strict_max", False)
    outside = []
    if low is not None:
        outside.append(col <= F.lit(low) if strict_min else col < F.lit(low))
    if high is not None:
        outside.append(col >= F.lit(high) if strict_max else col > F.lit(high))
    if not outside:
        raise SuiteError(f"between({kwargs['column']}) has neither min_value nor max_value")
    interval = "{}{}, {}{}".format(
        "(" if strict_min or low is None else "[",
        "-inf" if low is None else _shown(low),
        "+inf" if high is None else _shown(high),
        ")" if strict_max or high is None else "]",
    )
    violated = outside[0] if len(outside) == 1 else outside[0] | outside[1]
    return col.isNotNull() & violated, F.concat(col.cast("string"), F.lit(f" not in {interval}"))


# Expectation type -> (violated, why) builder; the one translation of GX row semantics.
_ROW_PREDICATES: dict[str, Callable[[dict[str, Any]], tuple[Column, Column]]] = {
    "expect_column_values_to_not_be_null": _null_row,
    "expect_column_values_to_be_in_set": _in_set_row,
    "expect_column_values_to_not_be_in_set": lambda kwargs: _in_set_row(kwargs, negate=True),
    "expect_column_values_to_be_between": _between_row,
}


def _shown(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return (
            value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if value.tzinfo else str(value)
        )
    return str(value)


def split_invalid_rows(
    df: DataFrame,
    suite: gx.ExpectationSuite,
    parameters: Mapping[str, Any] | None = None,
    checkpoint: bool = True,
) -> tuple[DataFrame, DataFrame]:
    """Split ``df`` into (good rows, bad rows + ``reason``) by the suite's row-level
    expectations, evaluated together in one pass.

    ``reason`` joins every broken expectation of the row with ``"; "``. With ``checkpoint``
    the flagged rows are materialised once (``localCheckpoint``), so writing both halves and
    validating the good one do not recompute ``df``.
    """
    from pyspark.sql import functions as F

    predicates = row_predicates(suite, parameters)
    if not predicates:
        return df, df.limit(0).withColumn("reason", F.lit(None).cast("string"))
    reasons = F.filter(
        F.array(*[F.when(p.violated, p.reason) for p in predicates]), lambda r: r.isNotNull()
    )
    flagged = df.withColumn("__reasons", reasons)
    if checkpoint:
        flagged = flagged.localCheckpoint(eager=True)
    good = flagged.where(F.size("__reasons") == 0).drop("__reasons")
    bad = flagged.where(F.size("__reasons") > 0).select(
        *[F.col(f"`{c}`") for c in df.columns], F.array_join("__reasons", "; ").alias("reason")
    )
    return good, bad


def quarantine_records(bad: DataFrame, source_kind: str, day: dt.date, run_id: str) -> DataFrame:
    """Bad rows from :func:`split_invalid_rows` shaped as ``bronze.quarantine`` rows."""
    from pyspark.sql import functions as F

    data = [c for c in bad.columns if c != "reason"]
    source = F.col(SOURCE_FILE) if SOURCE_FILE in bad.columns else F.lit(None).cast("string")
    return bad.select(
        F.lit(source_kind).alias(SOURCE_KIND),
        source.alias("source_file"),
        F.col("reason"),
        F.to_json(F.struct(*[F.col(f"`{c}`") for c in data])).alias("record"),
        F.lit(dt.datetime.now(dt.UTC).replace(tzinfo=None)).cast("timestamp").alias(INGESTED_AT),
        F.lit(run_id).alias(RUN_ID),
        F.lit(day).alias(INGEST_DATE),
    )


# -------------------------------------------------------------------------- outcomes
@dataclass(frozen=True)
class ExpectationOutcome:
    expectation_type: str
    column: str | None
    severity: Severity
    row_level: bool
    success: bool
    element_count: int | None
    unexpected_count: int | None
    observed_value: Any = None
    sample: list[Any] = field(default_factory=list)
    error: str | None = None

    def describe(self) -> str:
        name = f"{self.expectation_type}({self.column})" if self.column else self.expectation_type
        if self.error:
            return f"{name}: could not be evaluated: {self.error}"
        if self.unexpected_count is not None:
            sample = json.dumps(self.sample, default=str)
            return f"{name}: {self.unexpected_count} of {self.element_count} rows unexpected, e.g. {sample}"
        return f"{name}: observed {json.dumps(self.observed_value, default=str)}"


@dataclass(frozen=True)
class ValidationOutcome:
    """One validation run of one table partition."""

    table: str
    partition: dict[str, Any]
    suite: str
    run_id: str
    validated_at: dt.datetime
    results: list[ExpectationOutcome]
    data_docs_path: str | None

    @property
    def critical_failures(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success and r.severity == CRITICAL]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success and r.severity == WARNING]

    @property
    def success(self) -> bool:
        """No critical failure (warnings do not fail a partition)."""
        return not self.critical_failures

    @property
    def partition_str(self) -> str:
        return "/".join(f"{k}={v}" for k, v in self.partition.items())

    def message(self) -> str:
        failures = self.critical_failures
        lines = [
            f"{self.table} {self.partition_str}: {len(failures)} critical expectation(s) failed"
            f" (run {self.run_id})"
        ]
        lines += [f"  - {r.describe()}" for r in failures]
        if self.data_docs_path:
            lines.append(f"  Data Docs: {self.data_docs_path}")
        return "\n".join(lines)

    def raise_for_critical(self) -> None:
        """Raise :class:`ValidationError` when a critical expectation failed."""
        if self.critical_failures:
            raise ValidationError(self.message(), self)


# Schema of gold.validation rows (Spark DDL), one row per expectation per run.
OUTCOME_SCHEMA = (
    "table string, partition string, suite string, expectation_type string, column string, "
    "severity string, success boolean, element_count long, unexpected_count long, "
    "run_id string, validated_at timestamp"
)


def outcome_rows(outcome: ValidationOutcome) -> list[dict[str, Any]]:
    """One ``gold.validation`` row per expectation (see :data:`OUTCOME_SCHEMA`)."""
    validated_at = outcome.validated_at.astimezone(dt.UTC).replace(tzinfo=None)
    return [
        {
            "table": outcome.table,
            "partition": outcome.partition_str,
            "suite": outcome.suite,
            "expectation_type": r.expectation_type,
            "column": r.column,
            "severity": r.severity,
            "success": r.success,
            "element_count": r.element_count,
            "unexpected_count": r.unexpected_count,
            "run_id": outcome.run_id,
            "validated_at": validated_at,
        }
        for r in outcome.results
    ]


def _outcomes_of(results) -> list[ExpectationOutcome]:
    """regrow's view of GX results; a column the table lacks is named as such instead of
    the metric's traceback (GX evaluates every expectation on it and fails each)."""
    missing = {
        column
        for r in results
        for column in ((r.result or {}).get("details") or {})
        .get("mismatched", {})
        .get("missing", [])
    }
    return [_outcome_of(r, missing) for r in results]


def _outcome_of(result, missing: set[str]) -> ExpectationOutcome:
    config = result.expectation_config
    meta = config.meta or {}
    body = result.result or {}
    column = config.kwargs.get("column")
    error = _error_of(result.exception_info or {})
    if error and column in missing:
        error = "the column is missing"
    mismatched = (body.get("details") or {}).get("mismatched")
    return ExpectationOutcome(
        expectation_type=config.type,
        column=column,
        severity=meta.get("severity", CRITICAL),
        row_level=bool(meta.get("row_level", False)),
        success=bool(result.success),
        element_count=body.get("element_count"),
        unexpected_count=body.get("unexpected_count"),
        observed_value=mismatched or body.get("observed_value"),
        sample=list(body.get("partial_unexpected_list") or [])[:SAMPLE_SIZE],
        error=error,
    )


def _error_of(info: Mapping[str, Any]) -> str | None:
    """The exception message of a result: GX keys it by metric when a metric failed."""
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, Mapping) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


# ----------------------------------------------------------------------- validation
def _context(reports_dir: str):
    """An ephemeral GX context: suites, datasources and checkpoints live in memory (the
    suite files are the source of truth); validation results and Data Docs are files."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    defaults = InMemoryStoreBackendDefaults()
    stores = dict(defaults.stores)
    stores[defaults.validation_results_store_name] = {
        "class_name": "ValidationResultsStore",
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": os.path.join(reports_dir, "gx", "validations"),
        },
    }
    config = DataContextConfig(
        stores=stores,
        expectations_store_name=defaults.expectations_store_name,
        validation_results_store_name=defaults.validation_results_store_name,
        checkpoint_store_name=defaults.checkpoint_store_name,
        data_docs_sites={
            DATA_DOCS_SITE: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": data_docs_dir(reports_dir),
                },
                "site_index_builder": {
                    "class_name": "DefaultSiteIndexBuilder",
                    "validation_results_limit": DATA_DOCS_INDEX_LIMIT,
                },
            }
        },
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def data_docs_dir(reports_dir: str) -> str:
    return os.path.join(reports_dir, "data_docs")


def _run_name(run_id: str, partition: Mapping[str, Any]) -> str:
    """A run name that is also a safe folder name: ``{partition}__{run_id}``."""
    text = "__".join([*(f"{k}={v}" for k, v in partition.items()), run_id])
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)


def validate(
    df: DataFrame,
    suite: gx.ExpectationSuite,
    table: str,
    partition: Mapping[str, Any],
    run_id: str,
    reports_dir: str,
    *,
    recent_counts: Sequence[int] = (),
    now: dt.datetime | None = None,
    parameters: Mapping[str, Any] | None = None,
    raise_on_critical: bool = True,
) -> ValidationOutcome:
    """Validate one partition of ``table`` with ``suite`` on Spark and build its Data Docs.

    Args:
        partition: ``{date_column: day}``; the day fills the suite's time bounds.
        recent_counts: row counts of recent partitions (:func:`recent_row_counts`), for the
            row-count bounds.
        parameters: overrides of :func:`runtime_parameters`' values.
        raise_on_critical: raise :class:`ValidationError` (with ``.outcome``) on a critical
            failure, after the results and Data Docs are written.
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    values = {
        **runtime_parameters(partition_day(partition), recent_counts, now),
        **(parameters or {}),
    }
    context = _context(reports_dir)
    batch = (
        context.data_sources.add_spark(name="regrow")
        .add_dataframe_asset(name=table)
        .add_batch_definition_whole_dataframe(name=table)
    )
    # A copy: adding a suite to a context gives it ids and binds it to that context.
    suite = context.suites.add(gx.ExpectationSuite(**json.loads(_suite_json(suite))))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=table, data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=table,
            validation_definitions=[definition],
            actions=[
                gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[DATA_DOCS_SITE])
            ],
            result_format=RESULT_FORMAT,
        )
    )
    run = RunIdentifier(run_name=_run_name(run_id, partition), run_time=now)
    result = checkpoint.run(
        batch_parameters={"dataframe": df}, expectation_parameters=values, run_id=run
    )
    ((key, suite_result),) = result.run_results.items()
    docs = context.get_docs_sites_urls(resource_identifier=key, site_name=DATA_DOCS_SITE)
    url = docs[0]["site_url"] if docs else None
    outcome = ValidationOutcome(
        table=table,
        partition=dict(partition),
        suite=suite.name,
        run_id=run_id,
        validated_at=now,
        results=_outcomes_of(suite_result.results),
        data_docs_path=unquote(urlparse(url).path) if url else None,
    )
    logger.info(
        "%s %s: %d expectations, %d critical failure(s), %d warning(s); %s",
        table,
        outcome.partition_str,
        len(outcome.results),
        len(outcome.critical_failures),
        len(outcome.warnings),
        outcome.data_docs_path,
    )
    for warning in outcome.warnings:
        logger.warning("%s %s: %s", table, outcome.partition_str, warning.describe())
    if raise_on_critical:
        outcome.raise_for_critical()
    return outcome


# ----------------------------------------------------------------------- a day's gate
def suite_for(settings: Settings, table: str) -> gx.ExpectationSuite:
    """The suite of ``table``: its file in ``validation.expectations_dir`` (reviewed, in
    git), else the one generated from the contract, with a warning saying so.

    Raises:
        SuiteError: the file expects other columns than params.yaml now gives the table
            (e.g. ``features.windows`` changed): regenerate and review it.
    """
    path = suite_path(settings.resolve(settings.validation.expectations_dir), table)
    generated = build_suite(
        settings.dataset, table, settings.validation.allowed_values, settings.features
    )
    if not path.is_file():
        logger.warning(
            "no suite file %s: validating %s with the suite generated from the contract "
            "(`regrow expectations generate` writes it for review)",
            path, table,
        )  # fmt: skip
        return generated
    suite = load_suite(path)
    expected, found = _column_set(generated), _column_set(suite)
    if found is not None and expected is not None and set(found) != set(expected):
        raise SuiteError(
            f"{path} expects the columns of {table} to be {sorted(found)}, but params.yaml "
            f"now gives {sorted(expected)} (missing from the suite: "
            f"{sorted(set(expected) - set(found))}, no longer built: "
            f"{sorted(set(found) - set(expected))}): run `regrow expectations generate` and "
            "review the diff"
        )
    return suite


def _column_set(suite: gx.ExpectationSuite) -> list[str] | None:
    for expectation in suite.expectations:
        config = expectation.configuration.to_json_dict()
        if config["type"] == "expect_table_columns_to_match_set":
            return list(config["kwargs"]["column_set"])
    return None


def validate_day(
    spark,
    settings: Settings,
    lakehouse: Lakehouse,
    day: dt.date,
    run_id: str,
    tables: Sequence[str] = BRONZE_TABLES,
) -> list[ValidationOutcome]:
    """Validate one day's partition of each of ``tables``; record every expectation's
    result in ``gold.validation`` and build Data Docs; then raise :class:`ValidationError`
    naming each critical failure (warnings are recorded and logged only)."""
    from pyspark.sql import functions as F

    cfg = settings.validation
    reports_dir = settings.resolve(settings.reports_dir)
    # A share of what landed that day: its bronze rows plus its quarantined rows.
    landed = sum(
        partition_counts(lakehouse, t).get(str(day), 0) for t in (EVENTS, LABELS, QUARANTINE)
    )
    max_quarantined = math.floor(cfg.max_quarantine_fraction * landed)
    outcomes = []
    for table in tables:
        if table not in SUITES:
            raise SuiteError(f"no suite is defined for table {table!r} (known: {sorted(SUITES)})")
        column = TABLES[table].date_column
        partition = {column: day}
        df = lakehouse.read(spark, table, partitions=partition)
        recent = recent_row_counts(lakehouse, table, day, cfg.recent_days)
        low, high = row_count_bounds(recent, cfg.row_count_factor)
        outcome = validate(
            df,
            suite_for(settings, table),
            table,
            partition,
            run_id,
            reports_dir,
            recent_counts=recent,
            parameters={
                ROW_COUNT_MIN: low,
                ROW_COUNT_MAX: high,
                MAX_QUARANTINED: max_quarantined,
                SOURCE_ROWS: partition_counts(lakehouse, SOURCES.get(table, table)).get(
                    str(day), 0
                ),
            },
            raise_on_critical=False,
        )
        for warning in outcome.warnings:
            logger.warning("%s %s: warning: %s", table, day, warning.describe())
        logger.info(
            "%s %s: %s; Data Docs: %s",
            table,
            day,
            "passed" if outcome.success else "FAILED",
            outcome.data_docs_path,
        )
        outcomes.append(outcome)
    rows = [row | {DAY: day} for o in outcomes for row in outcome_rows(o)]
    results = spark.createDataFrame(rows, f"{OUTCOME_SCHEMA}, day date")
    for table in tables:
        lakehouse.write(
            results.where(F.col(TABLE) == table),
            VALIDATION,
            "overwrite",
            partition_by=list(TABLES[VALIDATION].partition_by),
            partition={DAY: day, TABLE: table},
        )
    failed = [o for o in outcomes if o.critical_failures]
    if failed:
        message = "\n".join(o.message() for o in failed)
        raise ValidationError(f"{day} is blocked:\n{message}", failed[0])
    return outcomes
