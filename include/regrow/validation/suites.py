"""Expectation suites: generated from the ``dataset`` contract, stored as reviewable JSON.

Suites are generated from the contract (:func:`build_suite`), written as reviewable JSON
under ``expectations/`` (:func:`write_suites`) and read back at run time
(:func:`load_suite`): the files in git are the source of truth, generation is a command.
Every expectation carries ``meta={"severity": "critical"|"warning", "row_level": bool}``;
what depends on the day being validated is a suite parameter
(``{"$PARAMETER": "day_start"}``), named here and filled by
:mod:`regrow.validation.parameters`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from regrow.catalog import (
    ALIASES,
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
    TABLES,
    derived_columns,
    label_columns,
    prediction_columns,
)
from regrow.catalog import FEATURES as SILVER_FEATURES
from regrow.settings import DatasetSettings, FeatureSettings

if TYPE_CHECKING:
    import great_expectations as gx

logger = logging.getLogger(__name__)

Severity = Literal["critical", "warning"]
CRITICAL: Severity = "critical"
WARNING: Severity = "warning"

# Runtime suite parameters (filled by :func:`regrow.validation.parameters.runtime_parameters`).
DAY_START = "day_start"
DAY_END = "day_end"
ROW_COUNT_MIN = "row_count_min"
ROW_COUNT_MAX = "row_count_max"
MAX_QUARANTINED = "max_quarantined"
# Rows of the bronze partition a silver partition was built from: nothing may be lost.
SOURCE_ROWS = "source_rows"

# A feature may be null in at most 5% of a day's rows before the day is flagged.
DEFAULT_NOT_NULL_MOSTLY = 0.95

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


class SuiteError(ValueError):
    """A suite file or expectation configuration regrow cannot use as written."""


Expectations = Callable[[DatasetSettings, FeatureSettings], list]


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


def _on_the_day(column: str, row_level: bool = False) -> list:
    """On the partition's day, and not in the future (day_end is capped at validation time)."""
    return [
        _expect(
            "ExpectColumnValuesToBeBetween",
            CRITICAL,
            row_level,
            column=column,
            min_value=_param(DAY_START),
            max_value=_param(DAY_END),
            strict_max=True,
        )
    ]


def _label_in_domain(dataset: DatasetSettings, row_level: bool = False) -> list:
    domain = {"column": dataset.label, "value_set": list(dataset.label_values)}
    return [_expect("ExpectColumnValuesToBeInSet", CRITICAL, row_level, **domain)]


def _event_expectations(dataset: DatasetSettings, _: FeatureSettings) -> list:
    columns = {**dataset.event_columns(), EVENT_DATE: "date", **_META_COLUMNS}
    out = _schema_expectations(columns)
    # A day without a single event is a missing or empty feed, not a quiet day.
    out.append(_expect("ExpectTableRowCountToBeBetween", CRITICAL, min_value=1))
    out += _not_null(dataset.id_columns())
    out.append(_expect("ExpectColumnValuesToBeUnique", CRITICAL, column=dataset.event_id))
    out += _on_the_day(dataset.event_timestamp, row_level=True)
    # A null feature is allowed (the model imputes); many nulls mean a broken feed.
    out += [
        _expect("ExpectColumnValuesToNotBeNull", WARNING, column=c, mostly=DEFAULT_NOT_NULL_MOSTLY)
        for c in dataset.features
    ]
    # The contract's value rules: ingest quarantines the rows that break them, so these
    # only fail on rows written otherwise. A category outside the allowed set is recorded,
    # not rejected (unless the contract says reject): a new value is drift for monitoring
    # to measure, and the row is still a valid event.
    for column, bounds in dataset.value_ranges.items():
        out.append(
            _expect("ExpectColumnValuesToBeBetween", CRITICAL, column=column,
                    min_value=bounds.min, max_value=bounds.max)
        )  # fmt: skip
    unknown = CRITICAL if dataset.unknown_categories == "reject" else WARNING
    for column, values in dataset.allowed_values.items():
        out.append(
            _expect("ExpectColumnValuesToBeInSet", unknown, column=column, value_set=list(values))
        )
    return out + _row_count()


def _label_expectations(dataset: DatasetSettings, *_: Any) -> list:
    columns = {**dataset.label_columns(), LABEL_DATE: "date", **_META_COLUMNS}
    out = _schema_expectations(columns)
    out += _not_null([dataset.event_id, dataset.label, dataset.label_timestamp])
    # Ingest keeps one label per event and day.
    out.append(_expect("ExpectColumnValuesToBeUnique", CRITICAL, column=dataset.event_id))
    out += _label_in_domain(dataset, row_level=True)
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


def _silver_feature_expectations(dataset: DatasetSettings, features: FeatureSettings) -> list:
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
    out += _not_null(dataset.id_columns())
    out.append(_expect("ExpectColumnValuesToBeUnique", CRITICAL, column=dataset.event_id))
    out += _on_the_day(dataset.event_timestamp)
    counts = [c for c, t in derived.items() if t == "long"]
    out += _not_null(counts)
    out += [
        _expect("ExpectColumnValuesToBeBetween", CRITICAL, column=c, min_value=0) for c in counts
    ]
    # Strictly earlier: a previous event is at least a microsecond before. (No windows,
    # e.g. a dataset without an entity: no such column.)
    if SECONDS_SINCE_PRIOR in derived:
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
    out += _not_null([*dataset.id_columns(), dataset.label, dataset.label_timestamp])
    out.append(_expect("ExpectColumnValuesToBeUnique", CRITICAL, column=dataset.event_id))
    out += _label_in_domain(dataset)
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
    out += _not_null([*dataset.id_columns(), SCORE, MODEL_NAME, MODEL_VERSION, MODEL_ALIAS])
    out += [
        _expect("ExpectColumnValuesToBeBetween", CRITICAL, column=SCORE, min_value=0, max_value=1),
        _expect("ExpectColumnValuesToBeInSet", CRITICAL, column=MODEL_ALIAS,
                value_set=list(ALIASES)),
        _expect("ExpectCompoundColumnsToBeUnique", CRITICAL,
                column_list=TABLES[PREDICTIONS].keys(dataset)),
        # As many champion rows as silver.features has events that day: none missed.
        _expect("ExpectTableRowCountToEqual", CRITICAL, value=_param(SOURCE_ROWS),
                row_condition=champion_rows),
    ]  # fmt: skip
    return out


# The tables that have a suite, and the function listing each one's expectations (from
# the contract, its value rules included, and the feature settings).
SUITES: dict[str, Expectations] = {
    EVENTS: _event_expectations,
    LABELS: _label_expectations,
    QUARANTINE: _quarantine_expectations,
    SILVER_FEATURES: _silver_feature_expectations,
    SILVER_LABELS: _silver_label_expectations,
    PREDICTIONS: _prediction_expectations,
}


def build_suite(
    dataset: DatasetSettings, table: str, features: FeatureSettings | None = None
) -> gx.ExpectationSuite:
    """The expectation suite of ``table``, generated from the schema contract (its
    ``value_ranges`` and ``allowed_values`` included: nothing is derived from data).

    Args:
        features: the feature settings silver.features is built with (default: defaults).
    """
    import great_expectations as gx

    if table not in SUITES:
        raise SuiteError(f"no suite is defined for table {table!r} (known: {sorted(SUITES)})")
    expectations = SUITES[table](dataset, features or FeatureSettings())
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
    features: FeatureSettings | None = None,
) -> list[Path]:
    """Write every table's generated suite as reviewable JSON; returns the files written."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    written = []
    for table in SUITES:
        path = suite_path(directory, table)
        suite = build_suite(dataset, table, features)
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
