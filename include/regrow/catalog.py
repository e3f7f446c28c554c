"""The table catalog: every table regrow writes, its partition columns and keys, and the
column names more than one stage reads.

This module sits at the bottom of the library (it imports only the settings), so that a
stage that reads another stage's table takes the name from here instead of importing the
stage. Column names that come from the user's schema contract (event id, entity, label...)
are not constants: they live in ``params.yaml``'s ``dataset`` section, and the functions
below combine them with regrow's own columns.
"""

from __future__ import annotations

from dataclasses import dataclass

from regrow.settings import DatasetSettings, FeatureSettings

# ------------------------------------------------------------------- partition columns
EVENT_DATE = "event_date"  # bronze.events, silver.features, gold.predictions
LABEL_DATE = "label_date"  # bronze.labels, silver.labels
INGEST_DATE = "ingest_date"  # bronze.quarantine
SOURCE_KIND = "source_kind"  # bronze.quarantine: events or labels
SOURCE_LINE = "source_line"  # bronze.quarantine: the record's line in its file, when known
DECISION_DATE = "decision_date"  # gold.decisions
DAY, TABLE = "day", "table"  # gold.validation
MONITOR_DATE = "monitor_date"  # gold.monitoring

# ------------------------------------------------------------ lineage on every row
RUN_ID = "_run_id"  # the run (Airflow run id, or manual__...) that wrote the row
SOURCE_FILE = "_source_file"  # bronze: the landing file the row came from
INGESTED_AT = "_ingested_at"
EXTRA_COLUMNS = "_extra_columns"  # bronze: columns the contract does not name, as JSON
# bronze.labels: when and by which run a quarantined label was released (its event landed
# after it); null for a label that went straight to bronze.
RELEASED_AT, RELEASED_BY = "_released_at", "_released_by"
SOURCE_VERSION = "_source_version"  # silver.features, gold.predictions: the input's version
SOURCE_VERSIONS = "_source_versions"  # silver.labels: {"bronze.events": 12, ...}

# ------------------------------------------------------------------ silver.features
SECONDS_SINCE_PRIOR = "seconds_since_prior_event"

# -------------------------------------------------------------------- silver.labels
LABEL_STATUS = "label_status"
ARRIVED, WINDOW_CLOSED, UNKNOWN = "arrived", "window_closed", "unknown"

# ------------------------------------------------------------------ gold.predictions
# Registry aliases; gold.predictions records the champion's rows as `champion` and the
# challenger's shadow rows as `shadow`.
CHAMPION, CHALLENGER, SHADOW = "champion", "challenger", "shadow"
ALIASES = (CHAMPION, SHADOW)
SCORE, DECISION, THRESHOLD = "score", "decision", "threshold"
MODEL_NAME, MODEL_VERSION, MODEL_ALIAS, MODEL_RUN_ID = (
    "model_name", "model_version", "model_alias", "model_run_id",
)  # fmt: skip
# Logical types of the columns every prediction row has besides the contract's keys.
PREDICTION_COLUMNS = {
    SCORE: "double",
    DECISION: "boolean",
    THRESHOLD: "double",
    MODEL_NAME: "string",
    MODEL_VERSION: "long",
    MODEL_ALIAS: "string",
    MODEL_RUN_ID: "string",
    EVENT_DATE: "date",
    SOURCE_VERSION: "long",  # the silver.features version the day was read from
    RUN_ID: "string",  # the scoring run (Airflow run id, or manual__...)
}


# ------------------------------------------------------------------------- tables
# Names of the dataset contract that a table's key may use for the user's columns.
_CONTRACT_KEYS = frozenset({"event_id", "entity_id", "event_timestamp"})


@dataclass(frozen=True)
class Table:
    """A table of the lakehouse: its name (``layer.name``), the columns it is partitioned
    by (the first is its day), what a row is, and the columns that identify a row (a name
    of the ``dataset`` contract, such as ``event_id``, stands for the user's column)."""

    name: str
    partition_by: tuple[str, ...]
    row: str
    key: tuple[str, ...] = ()

    def keys(self, dataset: DatasetSettings) -> list[str]:
        """The key columns, with the contract's names resolved to the user's columns."""
        return [getattr(dataset, k) if k in _CONTRACT_KEYS else k for k in self.key]

    @property
    def date_column(self) -> str | None:
        return self.partition_by[0] if self.partition_by else None

    def __str__(self) -> str:
        return self.name


EVENTS, LABELS, QUARANTINE = "bronze.events", "bronze.labels", "bronze.quarantine"
FEATURES, SILVER_LABELS = "silver.features", "silver.labels"
PREDICTIONS, VALIDATION = "gold.predictions", "gold.validation"
DECISIONS, MODEL_VERSIONS = "gold.decisions", "gold.model_versions"
MONITORING = "gold.monitoring"
REPLAY = "gold.replay"
TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(EVENTS, (EVENT_DATE,), "a landed event, typed", ("event_id",)),
        Table(LABELS, (LABEL_DATE,), "a landed label, typed", ("event_id",)),
        Table(QUARANTINE, (INGEST_DATE, SOURCE_KIND), "a rejected row with its reason"),
        Table(FEATURES, (EVENT_DATE,), "an event with its point-in-time features", ("event_id",)),
        Table(SILVER_LABELS, (LABEL_DATE,), "a label joined to its event", ("event_id",)),
        Table(
            PREDICTIONS,
            (EVENT_DATE,),
            "an event scored by a model (per alias)",
            ("event_id", MODEL_ALIAS),
        ),
        Table(VALIDATION, (DAY, TABLE), "one expectation's result on one day"),
        Table(
            MONITORING,
            (MONITOR_DATE,),
            "one check of one column on one monitored day",
            (MONITOR_DATE, "data_date", "check", "column"),
        ),
        Table(
            DECISIONS,
            (DECISION_DATE,),
            "one decision about the model, with its reason",
            ("decision_id",),
        ),
        Table(
            REPLAY,
            (),
            "one policy's day in a replay of history",
            ("replay_id", "policy", "day"),
        ),
        Table(
            MODEL_VERSIONS,
            (),
            "a registered model version and its lineage",
            (MODEL_NAME, MODEL_VERSION),
        ),
    )
}
BRONZE_TABLES = (EVENTS, LABELS, QUARANTINE)
SILVER_TABLES = (FEATURES, SILVER_LABELS)
# The table each table is built from, day for day (nothing may be lost between them).
SOURCES = {FEATURES: EVENTS, SILVER_LABELS: LABELS, PREDICTIONS: FEATURES}


# ------------------------------------------------------ columns from the contract
def key_columns(dataset: DatasetSettings) -> list[str]:
    """The columns that identify an event (and a prediction row, with its alias): the
    event id, the entity id when the contract has one, the event timestamp."""
    return dataset.id_columns()


def derived_columns(cfg: FeatureSettings) -> dict[str, str]:
    """Names and logical types of the features regrow computes, in column order."""
    windows = cfg.windows
    if not windows:
        return {}
    longest = max(windows, key=lambda w: cfg.window_seconds()[w])
    columns: dict[str, str] = {}
    for w in windows:
        columns[f"prior_events_{w}"] = "long"
        columns |= {f"{c}_prior_sum_{w}": "double" for c in cfg.sum_columns}
    columns[SECONDS_SINCE_PRIOR] = "double"
    columns |= {f"{c}_to_prior_mean_{longest}": "double" for c in cfg.ratio_columns}
    return columns


def feature_columns(dataset: DatasetSettings, cfg: FeatureSettings) -> list[str]:
    """Every model input column of silver.features: the contract's, then the derived ones."""
    return [*dataset.features, *derived_columns(cfg)]


def label_columns(dataset: DatasetSettings) -> dict[str, str]:
    """Columns of silver.labels and their logical types, in order."""
    return {
        **{c: "string" for c in key_columns(dataset)},
        dataset.event_timestamp: "timestamp",
        EVENT_DATE: "date",
        dataset.label: "int",
        dataset.label_timestamp: "timestamp",
        LABEL_DATE: "date",
    }


def prediction_columns(dataset: DatasetSettings) -> dict[str, str]:
    """Names and logical types of gold.predictions, in column order."""
    keys = dataset.event_columns()
    return {**{c: keys[c] for c in key_columns(dataset)}, **PREDICTION_COLUMNS}
