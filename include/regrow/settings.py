"""Typed settings: ``params.yaml`` is read once, here, and validated.

Every other module receives the section it needs (``settings.dataset``,
``settings.lakehouse`` ...), never the raw file. A wrong key or value stops with a
:class:`ConfigError` that names the key, the value and what was expected.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PARAMS_ENV = "REGROW_PARAMS"
PARAMS_FILE = "params.yaml"


class ConfigError(ValueError):
    """A ``params.yaml`` key is unknown, missing or has a value of the wrong type."""


class _Section(BaseModel):
    # extra="forbid": a misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValueRange(_Section):
    """The valid interval of a numeric feature; a bound left out is open."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ValueRange:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class DatasetSettings(_Section):
    """The schema contract of the user's data: column names are data, not code."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    event_id: str
    # Whose history the per-entity window features are computed over (a card, a customer).
    # null (or the event id itself): events have no entity beyond their id; then no
    # window features are built (features.windows must be empty).
    entity_id: str | None = None
    event_timestamp: str
    label: str
    label_timestamp: str
    label_values: list[int] = Field(default=[0, 1], min_length=2)
    positive_label: int = 1
    label_delay_days: int = Field(gt=0)
    numeric_features: list[str] = []
    categorical_features: list[str] = []
    boolean_features: list[str] = []
    slice_columns: list[str] = []
    # What a valid value is (docs/ingest.md): a row that breaks a rule goes to
    # bronze.quarantine with a reason naming the column.
    # [min, max] of numeric features, e.g. {amount: {min: 0}}; a value outside is rejected.
    value_ranges: dict[str, ValueRange] = {}
    # Known values of categorical features. Another value is a warning of the bronze.events
    # suite (a new category is drift for monitoring to measure), or rejected with `reject`.
    allowed_values: dict[str, list[str]] = {}
    unknown_categories: Literal["warn", "reject"] = "warn"
    # Spaces, tabs or line breaks around a key (event id, entity id): trimmed, or the row
    # rejected. Never kept: " c1" and "c1" would be two entities.
    key_whitespace: Literal["trim", "reject"] = "trim"
    # A longer text value is rejected (characters; null = no limit).
    max_string_length: int | None = Field(default=1000, gt=0)
    # An event id already in bronze.events on one of this many days before the ingested
    # day is a duplicate; null = every earlier day.
    duplicate_lookback_days: int | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _entity_is_the_event(cls, raw: Any) -> Any:
        # An entity equal to the event id is no entity: one spelling of "none" downstream.
        if isinstance(raw, dict) and raw.get("entity_id") is not None:
            if raw.get("entity_id") == raw.get("event_id"):
                raw = {**raw, "entity_id": None}
        return raw

    @model_validator(mode="after")
    def _check_columns(self) -> DatasetSettings:
        names = [*self.id_columns(), *self.features]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"columns listed twice in the contract: {duplicated}")
        if not self.features:
            raise ValueError("the contract declares no feature (numeric/categorical/boolean)")
        unknown = [c for c in self.slice_columns if c not in self.features]
        if unknown:
            raise ValueError(f"slice_columns {unknown} are not features of the contract")
        if self.positive_label not in self.label_values:
            raise ValueError(
                f"positive_label {self.positive_label} is not one of label_values {self.label_values}"
            )
        if self.label in (self.label_timestamp, self.event_id):
            raise ValueError("label must be a column of its own")
        return self

    @model_validator(mode="after")
    def _check_value_rules(self) -> DatasetSettings:
        for key, allowed in (
            ("value_ranges", self.numeric_features),
            ("allowed_values", self.categorical_features),
        ):
            unknown = [c for c in getattr(self, key) if c not in allowed]
            if unknown:
                kind = "numeric" if key == "value_ranges" else "categorical"
                raise ValueError(
                    f"{key} names {unknown}, which are not {kind} features of the contract "
                    f"({allowed})"
                )
        if self.unknown_categories == "reject" and not self.allowed_values:
            raise ValueError("unknown_categories: reject needs allowed_values")
        return self

    @property
    def features(self) -> list[str]:
        return [*self.numeric_features, *self.categorical_features, *self.boolean_features]

    def id_columns(self) -> list[str]:
        """The columns that identify an event: its id, its entity (if any), its time."""
        return [self.event_id, *([self.entity_id] if self.entity_id else []), self.event_timestamp]

    def event_columns(self) -> dict[str, str]:
        """Columns of an event row and their logical type (string/timestamp/double/boolean)."""
        columns = {c: "string" for c in self.id_columns()}
        columns[self.event_timestamp] = "timestamp"
        columns |= {c: "double" for c in self.numeric_features}
        columns |= {c: "string" for c in self.categorical_features}
        columns |= {c: "boolean" for c in self.boolean_features}
        return columns

    def label_columns(self) -> dict[str, str]:
        """Columns of a label row: the event it belongs to, the label, when it arrived."""
        return {
            self.event_id: "string",
            **({self.entity_id: "string"} if self.entity_id else {}),
            self.label: "int",
            self.label_timestamp: "timestamp",
        }


class LandingSettings(_Section):
    """Where raw files land: ``{path}/{kind}/{YYYY-MM-DD}/*.{format}``, kind = events|labels."""

    path: str = "data/landing"
    format: Literal["csv", "json", "parquet"] = "csv"
    # read: .gz, .bz2 and .xz files of the format are decompressed and read; refuse: they
    # are reported in bronze.quarantine, not read.
    compressed: Literal["read", "refuse"] = "read"
    # A file that cannot be read (UTF-16, binary, another format than its name says, a
    # folder named like a file): quarantine records it and the day goes on; fail stops it.
    unreadable: Literal["quarantine", "fail"] = "quarantine"


Scenario = Literal[
    "stable",
    "covariate_shift",
    "prior_shift",
    "concept_drift",
    "new_category",
    "seasonality",
    "broken_feed",
]


class SimulatorSettings(_Section):
    # false (or no simulator section, or `simulator: null`): `regrow simulate` and its DVC
    # stage leave landing.path alone; your own files are the landing.
    enabled: bool = True
    seed: int = 42
    start_date: dt.date = dt.date(2026, 1, 1)
    days: int = Field(default=30, gt=0)
    events_per_day: int = Field(default=2000, gt=0)
    n_entities: int = Field(default=3000, gt=0)
    fraud_rate: float = Field(default=0.03, gt=0, lt=1)
    # Chargebacks arrive days to weeks after the transaction; mean delay in days.
    mean_label_delay_days: float = Field(default=9.0, gt=0)
    scenario: Scenario = "stable"
    # Day index (0-based) at which the scenario's drift starts.
    drift_onset_day: int = Field(default=15, ge=0)
    # 0 = no effect, 1 = the scenario's full effect.
    drift_strength: float = Field(default=1.0, ge=0)


class LakehouseSettings(_Section):
    """Delta tables under one root: a local path or ``s3://bucket/prefix``."""

    root: str = "data/lakehouse"
    engine: Literal["auto", "delta-spark", "delta-rs"] = "auto"
    # Non-secret storage options for delta-rs/pyarrow (e.g. AWS_ENDPOINT_URL, AWS_REGION).
    # Credentials come from the environment (AWS_ACCESS_KEY_ID ...), never from this file.
    storage_options: dict[str, str] = {}
    # Parquet codec of the files regrow writes. lz4 (LZ4_RAW, which Spark names lz4raw)
    # decompresses about twice as fast as zstd and makes files about 1.4x larger; zstd
    # suits a lakehouse where bytes cost more than CPU (docs/lakehouse.md has the numbers).
    compression: Literal["lz4", "zstd", "snappy", "none"] = "lz4"
    # delta-rs engine: a stage's write of at most this many rows (a count the stage already
    # has: a day's landed records, its bronze partition) is collected to the driver as
    # Arrow and written there, not by Spark tasks through a Python worker: a 2,000-row
    # write took 0.03-0.05 s that way against 0.15-0.25 s through the tasks, 300,000 rows
    # 0.44-0.50 s against 0.54-0.66 s (2 cores, docs/lakehouse.md). 0: always the tasks.
    driver_write_rows: int = Field(default=100_000, ge=0)


class ValidationSettings(_Section):
    """Great Expectations gates on every table (suites in ``expectations_dir``)."""

    expectations_dir: str = "expectations"
    # A day's row count outside [median/f, median*f] of the recent days is a warning.
    row_count_factor: float = Field(default=5.0, gt=1)
    recent_days: int = Field(default=7, gt=0)
    # A day whose quarantined rows exceed this fraction of its landed rows is blocked...
    max_quarantine_fraction: float = Field(default=0.02, ge=0, le=1)
    # ...unless they are fewer than this many: a few bad rows of a small day are row
    # errors (quarantined with reasons), not a broken feed. 1: the fraction alone.
    min_quarantined_to_block: int = Field(default=20, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "allowed_values" in raw:
            raise ValueError(
                "allowed_values moved to dataset.allowed_values (with "
                "dataset.unknown_categories: warn | reject)"
            )
        return raw


_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int:
    """Seconds in a duration like ``90s``, ``15m``, ``1h``, ``7d``."""
    match = _DURATION.match(text)
    if not match or int(match[1]) == 0:
        raise ValueError(f"{text!r} is not a duration like 30m, 1h, 24h or 7d")
    return int(match[1]) * _SECONDS[match[2]]


class FeatureSettings(_Section):
    """Per-entity features computed from strictly earlier events only (point in time)."""

    # Look-back windows; the longest decides how many earlier days a day's features read.
    # []: no per-entity features (the only choice when dataset.entity_id is null).
    windows: list[str] = ["1h", "24h", "7d"]
    # Numeric features whose sum over each window is a feature (count of events always is).
    sum_columns: list[str] = []
    # Numeric features divided by the entity's mean over the longest window.
    ratio_columns: list[str] = []

    @model_validator(mode="after")
    def _check_windows(self) -> FeatureSettings:
        for window in self.windows:
            duration_seconds(window)
        if len(set(self.windows)) != len(self.windows):
            raise ValueError(f"windows listed twice: {self.windows}")
        if not self.windows and (self.sum_columns or self.ratio_columns):
            raise ValueError("sum_columns and ratio_columns need windows: none is given")
        return self

    def window_seconds(self) -> dict[str, int]:
        return {w: duration_seconds(w) for w in self.windows}

    def lookback_days(self) -> int:
        """Whole earlier days the longest window can reach into (0: no window)."""
        return -(-max(self.window_seconds().values(), default=0) // 86400)


class SplitSettings(_Section):
    """How a training set is cut from silver: by time, never at random."""

    # Exclusive: the set uses events and labels from before 00:00 UTC of this day.
    # null = the day after the newest day of silver.features.
    cutoff_date: dt.date | None = None
    # Events of the window_days before the cut-off are candidates.
    window_days: int = Field(default=30, gt=0)
    # window_closed: only events whose label window (dataset.label_delay_days) has closed by
    #   the cut-off; an unlabeled one is then a negative. Unbiased label rate.
    # label_arrived: also younger events whose label has already arrived (more recent
    #   positives, but the label rate of recent days is then inflated).
    matured: Literal["window_closed", "label_arrived"] = "window_closed"
    # The newest days of the matured events are the test split, the days before them the
    # validation split, the rest the training split.
    test_days: int = Field(default=3, gt=0)
    validation_days: int = Field(default=3, gt=0)
    # Category values seen fewer times than this in train share one "rare" code.
    rare_category_min_count: int = Field(default=20, ge=1)
    # Class balance of the training split only, after the split: none | undersample |
    # oversample (to balance_ratio negatives per positive).
    balance: Literal["none", "undersample", "oversample"] = "none"
    balance_ratio: float = Field(default=1.0, gt=0)
    seed: int = 42
    # The snapshot DVC tracks (Parquet per split, manifest.json, transform.json).
    output_dir: str = "data/trainset"
    # Flat numbers of the manifest, for `dvc metrics show`.
    metrics_file: str = "metrics/trainset.json"


class WarmStartSettings(_Section):
    """Stateful retraining: continue the champion's booster on the data since its window."""

    # Trees a warm start may add (early stopping can add fewer).
    new_trees: int = Field(default=60, gt=0)
    # The new trees are fitted on the training rows newer than the champion's window, and of
    # those only the rows of the newest recent_days days of the training split (null: all of
    # them). A champion a refused retrain left in place grows older every day, and "newer
    # than its window" becomes the whole split: a warm start then cost as much as a retrain
    # from scratch, and learnt a new concept late (the old one still filled the split).
    recent_days: int | None = Field(default=4, gt=0)
    # Caps that force a full stateless retrain instead: the champion already has this many
    # trees, or was itself the end of this many warm starts in a row, or its training
    # window ended this many days before the new cut-off (or, when newer, the window of the
    # last retrain from scratch the gate refused since it serves: its trees still hold).
    max_trees: int = Field(default=800, gt=0)
    max_in_a_row: int = Field(default=4, ge=1)
    max_age_days: int = Field(default=90, gt=0)


class TrainSettings(_Section):
    """XGBoost training (regrow.model.training)."""

    # stateless: a new model from scratch; warm_start: continue the champion (falls back to
    # stateless when there is no champion or a warm_start cap is reached).
    mode: Literal["stateless", "warm_start"] = "stateless"
    seed: int = 42
    # Booster parameters passed to xgboost.train; tree_method is always hist.
    params: dict[str, float | int | str] = {
        "max_depth": 4,
        "eta": 0.08,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "min_child_weight": 2,
    }
    num_boost_round: int = Field(default=400, gt=0)
    # Stop when validation log loss has not improved for this many rounds.
    early_stopping_rounds: int = Field(default=30, gt=0)
    # none: no reweighting, scores stay calibrated; scale_pos_weight: weight positives by
    # negatives/positives of train (rare positives), at the cost of calibration.
    imbalance: Literal["scale_pos_weight", "none"] = "none"
    # Fewer training rows than this (or a single class) stops training: no model is made.
    min_rows: int = Field(default=500, gt=0)
    min_positives: int = Field(default=10, gt=0)
    # The one-feature heuristic baseline; null = the feature whose train ROC-AUC is highest.
    heuristic_feature: str | None = None
    # XGBoost threads (0 = all cores); results are identical for a given thread count.
    # 1 by default: all cores on a busy small machine is far slower (thread contention).
    nthread: int = Field(default=1, ge=0)
    warm_start: WarmStartSettings = WarmStartSettings()
    # Where `regrow train` writes the trained model (DVC tracks it).
    model_dir: str = "data/model"


class BehavioralTest(_Section):
    """A behavioral test: perturb one raw feature, compare the scores before and after.

    invariance: the mean absolute score change must stay within ``tolerance``;
    directional: the mean score must move in ``direction`` (and at least ``min_fraction``
    of the rows must move that way or stay put).
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    kind: Literal["invariance", "directional"]
    feature: str
    # Exactly one: add a number, multiply by a number, or set a value.
    add: float | None = None
    multiply: float | None = None
    set: str | float | bool | None = None
    tolerance: float = Field(default=0.01, ge=0)
    direction: Literal["up", "down"] = "up"
    min_fraction: float = Field(default=0.9, ge=0, le=1)

    @model_validator(mode="after")
    def _one_perturbation(self) -> BehavioralTest:
        given = [k for k in ("add", "multiply", "set") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"behavioral test {self.name}: give exactly one of add/multiply/set")
        return self


Metric = Literal["pr_auc", "roc_auc", "log_loss", "ece"]


class EvaluateSettings(_Section):
    """Champion vs challenger on the same data, and the promotion gate (regrow.model.evaluation)."""

    # The metric that decides; pr_auc suits rare positives. log_loss and ece: lower is better.
    primary_metric: Metric = "pr_auc"
    # The challenger must beat the champion's primary metric (on the backtest window) by at
    # least this much; with no champion, it must beat every baseline by it.
    min_improvement: float = Field(default=0.01, ge=0)
    # No slice (dataset.slice_columns) may lose more than this on the primary metric...
    slice_tolerance: float = Field(default=0.05, ge=0)
    # ...counting only slices with at least this many rows and a positive (small ones are noise).
    min_slice_rows: int = Field(default=200, gt=0)
    # A static test set, pinned from the first training set's test split and never trained
    # on afterwards. Both models are always scored on it; pinned_tolerance (if set) also
    # gates: the challenger may not lose more than that on it. null = report only, since
    # after a concept drift the pinned labels describe the old concept. A pinned set that
    # lacks a model's feature (added since) is not scored for it; delete the folder to pin
    # a new one.
    pinned_test_set: str = "data/pinned-test"
    pinned_tolerance: float | None = Field(default=None, ge=0)
    calibration_bins: int = Field(default=10, gt=1)
    behavioral: list[BehavioralTest] = []
    # `regrow evaluate` (the DVC stage) writes these for `dvc metrics diff` / `dvc plots diff`.
    metrics_file: str = "metrics.json"
    plots_dir: str = "plots"


class ScoreSettings(_Section):
    """Batch scoring into gold.predictions (regrow.model.scoring)."""

    # A row's decision is score >= threshold; set it from the cost of a miss against the
    # cost of acting on a false alarm.
    threshold: float = Field(default=0.5, gt=0, lt=1)
    # Score the challenger (if one is registered) beside the champion, as alias "shadow":
    # its rows never change the champion's decisions, and monitoring compares the two.
    shadow: bool = True
    # XGBoost threads per Spark task: Spark already runs one task per core.
    nthread: int = Field(default=1, ge=0)


class PerformanceSettings(_Section):
    """Realised (matured labels) and estimated (calibrated scores) performance per day."""

    # Bootstrap resamples of a day's rows (as score-bin counts) for the confidence interval.
    bootstrap: int = Field(default=200, ge=0)
    confidence: float = Field(default=0.9, gt=0, lt=1)
    # Scores are counted in bins this wide (in Spark): PR-AUC and ROC-AUC of the binned
    # scores differ from the exact ones by less than the bin's share of ties.
    score_resolution: float = Field(default=1e-4, gt=0, lt=0.1)
    # Fewer positives (realised) or expected positives (estimated) than this on a day:
    # insufficient_data, not a number.
    min_positives: int = Field(default=10, ge=1)


class MonitorSettings(_Section):
    """Drift tests and performance (regrow.monitoring): what is compared, and when a shift
    counts as one."""

    # The reference a day is compared with. champion: the champion's training window (from
    # its lineage); rolling: the reference_days before the current window; fixed:
    # reference_start..reference_end.
    reference: Literal["champion", "rolling", "fixed"] = "champion"
    reference_days: int = Field(default=14, gt=0)
    reference_start: dt.date | None = None
    reference_end: dt.date | None = None
    # The current window: the monitored day and the window_days - 1 days before it.
    window_days: int = Field(default=1, gt=0)
    # Numeric columns (and the score) are binned at the reference's quantiles.
    bins: int = Field(default=10, ge=2, le=100)
    # Categories rarer than this share of the reference are counted as one bucket.
    rare_category_fraction: float = Field(default=0.01, ge=0, lt=0.5)
    # Multiple-testing correction across one day's tests: bh (Benjamini-Hochberg, the false
    # discovery rate), by (Benjamini-Yekutieli), holm (family-wise), none.
    correction: Literal["bh", "by", "holm", "none"] = "bh"
    alpha: float = Field(default=0.01, gt=0, lt=1)
    # A significant shift is flagged only if its PSI reaches this: 0.1 is the usual
    # "moderate shift" line; below it a large sample's significance is noise for the model.
    min_psi: float = Field(default=0.1, gt=0)
    # Fewer rows than this in the reference or the current window: insufficient_data.
    min_rows: int = Field(default=500, gt=0)
    # Null rate: flagged when it moves by at least this much (absolute) and significantly.
    min_null_rate_change: float = Field(default=0.05, gt=0, le=1)
    # Unseen categories: flagged when this share of the current rows has a value the
    # reference never had.
    min_unseen_fraction: float = Field(default=0.01, gt=0, le=1)
    # The label rate of matured labels: flagged when it moves by this share of the
    # reference rate (0.5: 3% -> 4.5%). PSI is blind here: a fraud rate tripling from 3% to
    # 9% is a PSI of only 0.07.
    min_label_rate_change: float = Field(default=0.5, gt=0)
    performance: PerformanceSettings = PerformanceSettings()

    @model_validator(mode="after")
    def _fixed_window(self) -> MonitorSettings:
        if self.reference == "fixed":
            if self.reference_start is None or self.reference_end is None:
                raise ValueError("reference: fixed needs reference_start and reference_end")
            if self.reference_end < self.reference_start:
                raise ValueError(
                    f"reference_end {self.reference_end} is before reference_start "
                    f"{self.reference_start}"
                )
        return self


class TriggerSettings(_Section):
    """A trigger fires when its condition held on at least ``n`` of the last ``m`` days."""

    enabled: bool = True
    n: int = Field(default=1, ge=1)
    m: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _n_of_m(self) -> TriggerSettings:
        if self.n > self.m:
            raise ValueError(f"n ({self.n}) cannot exceed m ({self.m})")
        return self


class AgeTrigger(TriggerSettings):
    max_days: int = Field(default=30, gt=0)


class VolumeTrigger(TriggerSettings):
    # Matured labels since the champion's window (or the last retrain request) at least this
    # share of a training window's (split.window_days) matured labels: 1.0 = as many new
    # labels as a model learns from. A share holds at any daily volume; a count does not.
    min_window_share: float = Field(default=1.0, gt=0)
    # A fixed count instead of the share, when set.
    min_new_labels: int | None = Field(default=None, gt=0)


class PerformanceTrigger(TriggerSettings):
    # The champion's primary metric (realised, else estimated) below its gate figure by
    # more than this (absolute).
    max_drop: float = Field(default=0.05, gt=0)
    # And significantly: the gate figure above the day's whole bootstrap interval
    # (monitor.performance.confidence; below it for a lower-is-better metric). A day's
    # realised metric on a few hundred positives swings more than max_drop on noise alone.
    significant: bool = True


class DriftTrigger(TriggerSettings):
    min_features: int = Field(default=2, ge=1)
    score: bool = True  # a flagged score (prediction) drift fires on its own
    # After k retrains of the champion that the gate refused, drift alone asks again only
    # cooldown_days x 2^k days after the last request, at most this many days; null: after
    # every cooldown. The features stay flagged against the champion's window whatever the
    # gate says, so without it drift alone asks after every cooldown (docs/replay.md).
    backoff_max_days: int | None = Field(default=24, gt=0)


class PolicyTriggers(_Section):
    age: AgeTrigger = AgeTrigger()
    volume: VolumeTrigger = VolumeTrigger()
    performance: PerformanceTrigger = PerformanceTrigger()
    drift: DriftTrigger = DriftTrigger()


class PolicySettings(_Section):
    """The retrain policy (regrow.policy): when a day's monitoring asks for a retrain."""

    triggers: PolicyTriggers = PolicyTriggers()
    # At most this many retrains requested in any 7 days; a trigger beyond it is recorded
    # with the budget at 0 and no retrain.
    budget_per_week: int = Field(default=2, ge=0)
    # Days after a retrain request during which triggers are recorded but do not retrain.
    cooldown_days: int = Field(default=3, ge=0)
    # warm_start (stage 3) unless the warm-start caps of train.warm_start say otherwise;
    # stateless: always from scratch.
    mode: Literal["warm_start", "stateless"] = "warm_start"
    # When the performance trigger fired (a concept drift): warm_start, the new trees learn
    # the new concept from the newest days (train.warm_start.recent_days), or stateless, a
    # new model of the whole window, most of which may still hold the old concept.
    on_performance_drop: Literal["warm_start", "stateless"] = "warm_start"
    # When drift alone asks again after the gate refused a retrain of the champion (a
    # covariate shift the new trees of a warm start did not fix): stateless, a model from
    # scratch on the whole window, or warm_start again.
    on_refused_drift: Literal["warm_start", "stateless"] = "stateless"


class ReplaySettings(_Section):
    """``regrow replay`` (regrow.replay)."""

    # The value of freshness (`regrow replay --freshness`): each day t is scored by the
    # model trained at the cut-off of day t - k (everything known before day t - k), for
    # every k of this list (days of staleness; 0 is a model trained the night before).
    freshness_days: list[int] = [0, 1, 3, 7, 14]

    @field_validator("freshness_days")
    @classmethod
    def _check_freshness(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("replay.freshness_days needs at least one number of days")
        negative = [k for k in value if k < 0]
        if negative:
            raise ValueError(
                f"replay.freshness_days are days of staleness (0 or more), not {negative}"
            )
        return sorted(set(value))


class MlflowSettings(_Section):
    """Tracking and registry. Default: a local SQLite store + local artifact directory."""

    tracking_uri: str = "sqlite:///mlflow.db"  # relative sqlite paths are relative to params.yaml
    artifact_location: str = "mlartifacts"  # or s3://bucket/prefix (credentials from env)
    experiment: str | None = None  # null = "regrow-<dataset.name>"
    registered_model: str | None = None  # null = dataset.name
    # An HTTP tracking server that does not answer fails the task after this long.
    http_timeout_seconds: int = Field(default=10, gt=0)
    http_max_retries: int = Field(default=0, ge=0)


class SparkSettings(_Section):
    master: str = "local[*]"
    app_name: str = "regrow"
    # Few partitions: daily batches are small and 2 cores are the default machine.
    shuffle_partitions: int = Field(default=4, gt=0)
    driver_memory: str = "2g"
    conf: dict[str, str] = {}
    # A range backfill of days whose landed event files are smaller than this (the median
    # day) runs Spark's expressions interpreted instead of compiled: compiling costs a
    # small day more than it saves (docs/spark.md). 0: always compiled.
    interpreted_below_mib: float = Field(default=2.0, ge=0)
    # A Spark Connect server (sc://host:port) to run on instead of a Spark in this process;
    # unset: $SPARK_REMOTE if set, else a local session.
    remote: str | None = None
    # The local Spark Connect server `regrow spark start` runs (on 127.0.0.1): its port,
    # and the folder of its pid file and log.
    connect_port: int = Field(default=15002, gt=0, lt=65536)
    server_dir: str = ".spark-connect"

    @field_validator("remote")
    @classmethod
    def _check_remote(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("sc://"):
            raise ValueError(
                f"spark.remote must be a Spark Connect URL sc://host:port, not {value!r}"
            )
        return value


class AirflowSettings(_Section):
    start_date: dt.date = dt.date(2026, 1, 1)
    schedule: str = "@daily"
    # regrow_retrain's fallback (cron, UTC) when no retrain.requested Asset arrives.
    retrain_schedule: str = "0 3 * * 1"
    catchup: bool = True
    # One day at a time by default: days of one table are independent, but a laptop has 2 cores.
    max_active_runs: int = Field(default=1, gt=0)
    retries: int = Field(default=2, ge=0)
    retry_delay_seconds: int = Field(default=60, gt=0)
    sensor_poke_interval_seconds: int = Field(default=60, gt=0)
    # How long the sensor waits for a day's landing file before failing the run.
    sensor_timeout_seconds: int = Field(default=6 * 3600, gt=0)
    # How DAG tasks run their Spark jobs: "connect" on the long-running Spark Connect
    # server of the spark_connect_conn_id connection (no JVM start per task), or "submit"
    # through spark-submit on the spark_conn_id connection (a cluster master in production).
    spark_via: Literal["connect", "submit"] = "connect"
    spark_conn_id: str = "spark_default"
    spark_connect_conn_id: str = "spark_connect_default"
    aws_conn_id: str = "aws_default"


class Settings(_Section):
    dataset: DatasetSettings
    landing: LandingSettings = LandingSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    lakehouse: LakehouseSettings = LakehouseSettings()
    validation: ValidationSettings = ValidationSettings()
    features: FeatureSettings = FeatureSettings()
    split: SplitSettings = SplitSettings()
    train: TrainSettings = TrainSettings()
    evaluate: EvaluateSettings = EvaluateSettings()
    score: ScoreSettings = ScoreSettings()
    monitor: MonitorSettings = MonitorSettings()
    policy: PolicySettings = PolicySettings()
    replay: ReplaySettings = ReplaySettings()
    mlflow: MlflowSettings = MlflowSettings()
    spark: SparkSettings = SparkSettings()
    airflow: AirflowSettings = AirflowSettings()
    reports_dir: str = "reports"
    # Directory the relative paths above are resolved against (set by the loader).
    base_dir: str = "."

    @model_validator(mode="before")
    @classmethod
    def _simulator_only_if_configured(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("simulator") is None:
            raw = {**raw, "simulator": {"enabled": False}}
        return raw

    @model_validator(mode="before")
    @classmethod
    def _no_entity_no_windows(cls, raw: Any) -> Any:
        # Without an entity, the default windows would have nothing to aggregate over: they
        # default to none (windows given explicitly are checked below).
        if not isinstance(raw, dict) or not isinstance(raw.get("dataset"), dict):
            return raw
        dataset = raw["dataset"]
        if dataset.get("entity_id") in (None, dataset.get("event_id")):
            features = raw.get("features") or {}
            if isinstance(features, dict) and "windows" not in features:
                raw = {**raw, "features": {**features, "windows": []}}
        return raw

    @model_validator(mode="after")
    def _check_cross_sections(self) -> Settings:
        if self.dataset.entity_id is None and self.features.windows:
            raise ValueError(
                f"features.windows {self.features.windows} needs an entity to aggregate over, "
                "but dataset.entity_id is null (or the event id): set features.windows: [] "
                "(and sum_columns/ratio_columns: []), or name the entity column"
            )
        for key in ("sum_columns", "ratio_columns"):
            unknown = [
                c for c in getattr(self.features, key) if c not in self.dataset.numeric_features
            ]
            if unknown:
                raise ValueError(
                    f"features.{key} names {unknown}, which are not numeric features of the "
                    f"dataset contract ({self.dataset.numeric_features})"
                )
        heuristic = self.train.heuristic_feature
        if heuristic is not None and heuristic not in self.dataset.features:
            raise ValueError(
                f"train.heuristic_feature {heuristic!r} is not a feature of the dataset contract"
            )
        unknown = [
            t.name for t in self.evaluate.behavioral if t.feature not in self.dataset.features
        ]
        if unknown:
            raise ValueError(
                f"evaluate.behavioral {unknown}: their feature is not in the dataset contract "
                f"({self.dataset.features})"
            )
        return self

    def resolve(self, path: str) -> str:
        """An absolute path or URI for ``path`` (relative paths are relative to params.yaml)."""
        if "://" in path or os.path.isabs(path):
            return path
        return str((Path(self.base_dir) / path).resolve())


def find_params(path: str | os.PathLike[str] | None = None) -> Path:
    """The params file: the argument, else ``$REGROW_PARAMS``, else the nearest ``params.yaml``."""
    if path is None:
        path = os.environ.get(PARAMS_ENV)
    if path is not None:
        found = Path(path)
        if not found.is_file():
            raise ConfigError(f"params file not found: {found}")
        return found.resolve()
    here = Path.cwd().resolve()
    for directory in (here, *here.parents):
        if (directory / PARAMS_FILE).is_file():
            return directory / PARAMS_FILE
    package_root = Path(__file__).resolve().parents[2] / PARAMS_FILE
    if package_root.is_file():
        return package_root
    raise ConfigError(f"no {PARAMS_FILE} in {here} or its parents; set ${PARAMS_ENV}")


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error on one line: what and where (line and column, 1-based)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{problem}{where}"


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read and validate the params file once; ``overrides`` replace whole top-level keys."""
    params = find_params(path)
    try:
        raw = yaml.safe_load(params.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{params}: not valid YAML: {_yaml_problem(err)}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{params}: expected a mapping of sections, got {type(raw).__name__}")
    raw = {**raw, **overrides}
    raw.setdefault("base_dir", str(params.parent))
    return settings_from_dict(raw, source=str(params))


def settings_from_dict(raw: dict[str, Any], source: str = "params") -> Settings:
    try:
        return Settings.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None


def _describe(err: ValidationError, source: str) -> str:
    lines = [f"{source}: {err.error_count()} invalid setting(s)"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  - {key}: unknown key (misspelt? see the documented params.yaml)")
        elif e["type"] == "missing":
            lines.append(f"  - {key}: required key is missing")
        else:
            lines.append(f"  - {key}: got {e.get('input')!r}; expected {e['msg'].lower()}")
    return "\n".join(lines)
