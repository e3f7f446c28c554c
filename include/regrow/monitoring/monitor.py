"""A monitored day: drift against a reference, performance before and after labels, into
``gold.monitoring``.

Two steps, each one library call of the ``regrow_monitor`` DAG (and together
``regrow monitor --date D`` and the DVC stage ``monitor``):

- :func:`compute_drift`: every feature of the contract and every derived feature, the
  champion's score and the label rate of the newest matured day, against the reference
  window (:func:`windows`); counted by Spark as aggregates (:mod:`.profile`), tested on the
  driver from the counts (:mod:`.drift`), corrected for the day's many tests.
- :func:`compute_performance`: the champion's estimated performance on the day (from its
  calibrated scores, before any label) and its realised performance on the newest day
  whose label window has closed (:mod:`.performance`).

Each step replaces its own rows of the day, so a rerun gives the same rows, not twice
as many.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from regrow.catalog import (
    CHAMPION,
    DECISION_DATE,
    DECISIONS,
    EVENT_DATE,
    FEATURES,
    LABEL_DATE,
    MODEL_ALIAS,
    MONITOR_DATE,
    MONITORING,
    PREDICTIONS,
    SCORE,
    SILVER_LABELS,
    TABLES,
    derived_columns,
)
from regrow.data.labels import cutoff_instant, labels_as_of, newest_matured_day
from regrow.model.decisions import SCHEMA as DECISIONS_SCHEMA
from regrow.monitoring import drift, performance, profile
from regrow.monitoring.results import (
    BOOLEAN,
    CATEGORICAL,
    DRIFT,
    DRIFT_CHECKS,
    INSUFFICIENT,
    LABEL,
    LABEL_DRIFT,
    NULL_RATE,
    NUMERIC,
    PERFORMANCE_CHECKS,
    PREDICTION_DRIFT,
    SCHEMA,
    CheckResult,
    to_row,
)
from regrow.monitoring.results import SCORE as SCORE_KIND

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from regrow.model.registry import Version
    from regrow.settings import Settings
    from regrow.stage import StageContext

logger = logging.getLogger(__name__)

Window = tuple[dt.date, dt.date]


class MonitorError(RuntimeError):
    """A day cannot be monitored: no champion, or a day with features but no scores."""


# ------------------------------------------------------------------------- windows
@dataclass(frozen=True)
class Windows:
    """The current window (the monitored day and the days before it) and the reference;
    ``reference`` is None when it cannot be known, and ``why`` says why."""

    current: Window
    reference: Window | None
    why: str = ""


def windows(settings: Settings, champion: Version, day: dt.date) -> Windows:
    """The windows of ``day`` under ``monitor.reference``.

    ``champion``: the champion's training window, from its ``train_window`` lineage tag; a
    champion registered without lineage has no reference (its checks are recorded as
    insufficient_data, with the fix).
    """
    cfg = settings.monitor
    current = (day - dt.timedelta(days=cfg.window_days - 1), day)
    if cfg.reference == "fixed":
        return Windows(current, (cfg.reference_start, cfg.reference_end))
    if cfg.reference == "rolling":
        end = current[0] - dt.timedelta(days=1)
        return Windows(current, (end - dt.timedelta(days=cfg.reference_days - 1), end))
    window = champion.tags.get("train_window", "")
    try:
        first, last = (dt.datetime.fromisoformat(t).date() for t in window.split(".."))
    except ValueError:
        return Windows(current, None, (
            f"champion {champion.name} v{champion.version} has no training window in its "
            f"lineage (tag train_window={window!r}): set monitor.reference to rolling or "
            f"fixed, or promote a model trained by regrow"
        ))  # fmt: skip
    return Windows(current, (first, last))


def _days(window: Window) -> list[dt.date]:
    first, last = window
    return [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]


def _text(window: Window | None) -> str | None:
    return f"{window[0]}..{window[1]}" if window else None


def matured_day(settings: Settings, day: dt.date) -> dt.date:
    """The newest day whose label windows have all closed by the end of ``day`` (the
    boundary rule of :mod:`regrow.data.labels`)."""
    return newest_matured_day(settings.dataset, day + dt.timedelta(days=1))


# ------------------------------------------------------------------------- reports
@dataclass(frozen=True)
class StepReport:
    """What one monitoring step wrote for a day."""

    day: str
    step: str
    champion_version: str
    results: list[CheckResult]
    table_version: int

    @property
    def flagged(self) -> list[CheckResult]:
        return [r for r in self.results if r.flagged]

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "step": self.step,
            "champion_version": self.champion_version,
            "table_version": self.table_version,
            "flagged": [f"{r.check}:{r.column}" for r in self.flagged],
            "insufficient_data": [
                f"{r.check}:{r.column}" for r in self.results if r.status == INSUFFICIENT
            ],
            "results": len(self.results),
        }


@dataclass(frozen=True)
class MonitorReport:
    """Both steps of a day."""

    drift: StepReport
    performance: StepReport

    def as_dict(self) -> dict[str, Any]:
        return {"drift": self.drift.as_dict(), "performance": self.performance.as_dict()}


def _champion(ctx: StageContext) -> Version:
    champion = ctx.registry.alias(CHAMPION)
    if champion is None:
        raise MonitorError(
            f"registered model {ctx.registry.name} has no {CHAMPION}: there is nothing to "
            f"monitor yet. Train and gate a model first (regrow retrain)"
        )
    return champion


def _write(
    ctx: StageContext, day: dt.date, checks: Sequence[str], rows: list[dict[str, Any]]
) -> int:
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    commit = ctx.lakehouse.replace_records(
        MONITORING,
        table,
        {MONITOR_DATE: day, "check": list(checks)},
        partition_by=list(TABLES[MONITORING].partition_by),
    )
    return commit.version


# --------------------------------------------------------------------------- drift
def compute_drift(ctx: StageContext, day: dt.date) -> StepReport:
    """Drift of ``day``'s current window against the reference, into gold.monitoring.

    Raises:
        MonitorError: no champion; or the day has features but has not been scored.
    """
    settings, lakehouse = ctx.settings, ctx.lakehouse
    champion = _champion(ctx)
    win = windows(settings, champion, day)
    feature_days = lakehouse.partition_rows(FEATURES)
    current_days = [d for d in _days(win.current) if str(d) in feature_days]
    if str(day) in feature_days:
        _require_scored(ctx, day)
    reference_text = _text(win.reference)
    if win.reference is None:
        results = [r.with_(status=INSUFFICIENT, detail={"reason": win.why})
                   for r in _unmeasured(settings)]  # fmt: skip
    else:
        reference_days = [d for d in _days(win.reference) if str(d) in feature_days]
        results = _drift_results(ctx, champion, reference_days, current_days, feature_days)
        if reference_days:  # the days actually read
            reference_text = f"{reference_days[0]}..{reference_days[-1]}"
    # The label is corrected with the rest: it is one more test of the same day.
    results = drift.apply_correction([*results, _label_drift(ctx, day, win)], settings.monitor)
    context = {
        MONITOR_DATE: day, "data_date": day, "reference_window": reference_text,
        "current_window": _text(win.current), "champion_version": champion.version,
        "run_id": ctx.run_id,
    }  # fmt: skip
    rows = [to_row(r, **context) for r in results]
    matured = matured_day(settings, day)
    for row, r in zip(rows, results, strict=True):
        if r.check == LABEL_DRIFT:  # the label rate describes the matured day
            row["data_date"], row["current_window"] = matured, f"{matured}..{matured}"
    version = _write(ctx, day, DRIFT_CHECKS, rows)
    report = StepReport(str(day), "drift", champion.version, results, version)
    logger.info(
        "gold.monitoring %s drift vs %s: %d checks, flagged: %s -> v%d",
        day, reference_text or "no reference", len(results),
        ", ".join(f"{r.check}:{r.column}" for r in report.flagged) or "none", version,
    )  # fmt: skip
    return report


def _complete_history(
    settings: Settings, days: Sequence[dt.date], feature_days: dict[str, int]
) -> tuple[list[dt.date], str]:
    """``days`` without the first ``features`` look-back of silver.features' history, and
    the reason when none is left.

    There the windowed features lack their earlier days (a card's 7-day count is low on
    day 2 because days -5..0 were never ingested): against such a reference every later day
    would look drifted, so the derived features are compared on complete days only.
    """
    if not feature_days:
        return list(days), ""
    first = min(dt.date.fromisoformat(d) for d in feature_days)
    lookback = settings.features.lookback_days()
    complete = first + dt.timedelta(days=lookback)
    kept = [d for d in days if d >= complete]
    why = "" if kept else (
        f"the reference ({days[0] if days else '-'}..{days[-1] if days else '-'}) lies within "
        f"the first {lookback} day(s) of {FEATURES} (from {first}), where the windowed "
        f"features lack their history: no complete day to compare with"
    )  # fmt: skip
    return kept, why


def _require_scored(ctx: StageContext, day: dt.date) -> None:
    scored = ctx.lakehouse.partition_rows(PREDICTIONS) if ctx.lakehouse.exists(PREDICTIONS) else {}
    if str(day) not in scored:
        raise MonitorError(
            f"{day} has features but no predictions in {PREDICTIONS}: score it first "
            f"(regrow score --date {day})"
        )


def feature_kinds(settings: Settings) -> dict[str, str]:
    """Each monitored feature (the contract's and the derived ones) and its kind."""
    dataset = settings.dataset
    kinds = {c: NUMERIC for c in dataset.numeric_features}
    kinds |= {c: CATEGORICAL for c in dataset.categorical_features}
    kinds |= {c: BOOLEAN for c in dataset.boolean_features}
    kinds |= {c: NUMERIC for c in derived_columns(settings.features)}
    return kinds


def _unmeasured(settings: Settings) -> list[CheckResult]:
    """Every drift check of a day, unmeasured (to record why none could be made)."""
    results = []
    for column, kind in feature_kinds(settings).items():
        results += [CheckResult(DRIFT, column, kind), CheckResult(NULL_RATE, column, kind)]
    results.append(CheckResult(PREDICTION_DRIFT, SCORE, SCORE_KIND))
    return results


def _read_features(ctx: StageContext, days: Sequence[dt.date]) -> DataFrame:
    lakehouse, spark = ctx.lakehouse, ctx.spark
    if not days:  # no partition at all: the table's columns, no rows
        return lakehouse.read(spark, FEATURES).limit(0)
    # As one Spark task when small: the profiles group and aggregate them.
    return lakehouse.read_days(spark, FEATURES, EVENT_DATE, days)


def _drift_results(
    ctx: StageContext,
    champion: Version,
    reference_days: Sequence[dt.date],
    current_days: Sequence[dt.date],
    feature_days: dict[str, int],
) -> list[CheckResult]:
    settings = ctx.settings
    kinds = feature_kinds(settings)
    derived = derived_columns(settings.features)
    reference, current = _read_features(ctx, reference_days), _read_features(ctx, current_days)
    missing = {c: k for c, k in kinds.items() if c not in reference.columns}
    contract = {c: k for c, k in kinds.items() if c not in missing and c not in derived}
    windowed = {c: k for c, k in kinds.items() if c not in missing and c in derived}
    results = _column_drift(settings, reference, current, contract)
    complete, why = _complete_history(settings, reference_days, feature_days)
    # The windowed features, and the score (the model reads them), on complete days only.
    if complete == list(reference_days):
        results += _column_drift(settings, reference, current, windowed)
        results.append(_prediction_drift(ctx, champion, reference, current_days))
    elif complete:
        days = f"{complete[0]}..{complete[-1]}"  # the look-back's first days left out
        shorter = _read_features(ctx, complete)
        results += [r.with_(detail={**r.detail, "reference_days": days}) for r in [
            *_column_drift(settings, shorter, current, windowed),
            _prediction_drift(ctx, champion, shorter, current_days),
        ]]  # fmt: skip
    else:
        results += [CheckResult(DRIFT, c, k, INSUFFICIENT, detail={"reason": why})
                    for c, k in windowed.items()]  # fmt: skip
        results.append(CheckResult(PREDICTION_DRIFT, SCORE, SCORE_KIND, INSUFFICIENT,
                                   detail={"reason": why}))  # fmt: skip
    for column, kind in missing.items():  # a table built under another contract
        reason = (f"{column} is not a column of {FEATURES}: rebuild the features under the "
                  f"contract of params.yaml (regrow features --all)")  # fmt: skip
        results.append(CheckResult(DRIFT, column, kind, INSUFFICIENT, detail={"reason": reason}))
    return results


def _column_drift(
    settings: Settings, reference: DataFrame, current: DataFrame, kinds: dict[str, str]
) -> list[CheckResult]:
    """Drift, null rate (and unseen categories) of ``kinds``' columns: two Spark counts."""
    cfg = settings.monitor
    numeric = [c for c, k in kinds.items() if k == NUMERIC]
    discrete = [c for c, k in kinds.items() if k != NUMERIC]
    edges = profile.quantile_edges(reference, numeric, cfg.bins)
    ref_counts = profile.profile(reference, edges, discrete)
    cur_counts = profile.profile(current, edges, discrete)
    return drift.column_checks(kinds, ref_counts, cur_counts, cfg)


def _prediction_drift(
    ctx: StageContext, champion: Version, reference: DataFrame, current_days: Sequence[dt.date]
) -> CheckResult:
    """The champion's scores on the day against its scores on the reference window (scored
    here, by the same model, so that the two differ only by the data)."""
    from pyspark.sql import functions as F

    from regrow.model.scoring import Scorer, check_inputs, score_frame

    settings = ctx.settings
    cfg = settings.monitor
    scorer = Scorer(CHAMPION, champion, ctx.registry.load(champion.version))
    check_inputs(reference.schema, [scorer], f"{FEATURES} (the reference window)")
    scored = score_frame(reference, [scorer], settings.dataset, settings.score, -1, ctx.run_id)
    if current_days:
        current = ctx.lakehouse.read_days(ctx.spark, PREDICTIONS, EVENT_DATE, current_days).where(
            F.col(MODEL_ALIAS) == CHAMPION
        )
    else:
        current = scored.limit(0)
    edges = profile.quantile_edges(scored, [SCORE], cfg.bins)
    ref = profile.profile(scored.select(SCORE), edges, [])[SCORE]
    cur = profile.profile(current.select(SCORE), edges, [])[SCORE]
    return drift.binned_drift(SCORE, ref, cur, cfg, kind=SCORE_KIND, check=PREDICTION_DRIFT)


def _positive(ctx: StageContext) -> Any:
    from pyspark.sql import functions as F

    dataset = ctx.settings.dataset
    return F.col(dataset.label) == F.lit(dataset.positive_label)


def _label_drift(ctx: StageContext, day: dt.date, win: Windows) -> CheckResult:
    """The positive rate of the newest matured day against the reference window's, both
    with the labels known by ``day`` (an event without one is a negative: its window has
    closed)."""
    settings = ctx.settings
    label = settings.dataset.label
    unmeasured = CheckResult(LABEL_DRIFT, label, LABEL)
    if win.reference is None:
        return unmeasured.with_(status=INSUFFICIENT, detail={"reason": win.why})
    matured = matured_day(settings, day)
    reference_days = [d for d in _days(win.reference) if d <= matured]
    counts = _label_counts(ctx, day, [*reference_days, matured])
    ref_rows = sum(counts.get(d, (0, 0))[0] for d in reference_days)
    ref_pos = sum(counts.get(d, (0, 0))[1] for d in reference_days)
    result = drift.label_rate_drift(
        label, (ref_rows, ref_pos), counts.get(matured, (0, 0)), settings.monitor
    )
    return result.with_(
        detail={**result.detail, "labels_known_by": str(day), "matured_day": str(matured)}
    )


def _label_counts(
    ctx: StageContext, day: dt.date, days: Sequence[dt.date]
) -> dict[dt.date, tuple[int, int]]:
    """Events and positive labels known by ``day``, per event day (an aggregate)."""
    from pyspark.sql import functions as F

    lakehouse = ctx.lakehouse
    rows = lakehouse.partition_rows(FEATURES)
    events = {d: rows[str(d)] for d in days if str(d) in rows}
    if not events or not lakehouse.exists(SILVER_LABELS):
        return {d: (n, 0) for d, n in events.items()}
    positives = (
        lakehouse.read(ctx.spark, SILVER_LABELS)
        .where(F.col(EVENT_DATE).isin(list(events)) & (F.col(LABEL_DATE) <= F.lit(day)))
        .where(_positive(ctx))
        .groupBy(EVENT_DATE)
        .count()
        .collect()
    )
    found = {r[EVENT_DATE]: int(r["count"]) for r in positives}
    return {d: (n, found.get(d, 0)) for d, n in events.items()}


# --------------------------------------------------------------------- performance
def compute_performance(ctx: StageContext, day: dt.date) -> StepReport:
    """The champion's estimated performance on ``day`` and its realised performance on
    the newest matured day, into gold.monitoring (a metric per row).

    Raises:
        MonitorError: no champion; or the day has features but has not been scored.
    """
    settings, lakehouse = ctx.settings, ctx.lakehouse
    champion = _champion(ctx)
    cfg = settings.monitor.performance
    feature_days = lakehouse.partition_rows(FEATURES)
    if str(day) in feature_days:
        _require_scored(ctx, day)
    matured = matured_day(settings, day)
    context = {
        MONITOR_DATE: day, "reference_window": None, "champion_version": champion.version,
        "run_id": ctx.run_id,
    }  # fmt: skip
    estimated = performance.estimated(_histogram(ctx, day, labeled_by=None), cfg)
    realised = performance.realised(_histogram(ctx, matured, labeled_by=day), cfg)
    rows = [to_row(r, data_date=day, current_window=f"{day}..{day}", **context)
            for r in estimated]  # fmt: skip
    rows += [to_row(r, data_date=matured, current_window=f"{matured}..{matured}", **context)
             for r in realised]  # fmt: skip
    version = _write(ctx, day, PERFORMANCE_CHECKS, rows)
    results = [*estimated, *realised]
    metric = settings.evaluate.primary_metric

    def shown(results: list[CheckResult]) -> str:
        found = [r for r in results if r.column == metric]
        return f"{found[0].value:.4f}" if found and found[0].value is not None else "n/a"

    logger.info(
        "gold.monitoring %s performance: %s estimated %s (day %s), realised %s (day %s) -> v%d",
        day, metric, shown(estimated), day, shown(realised), matured, version,
    )  # fmt: skip
    return StepReport(str(day), "performance", champion.version, results, version)


def _histogram(ctx: StageContext, day: dt.date, labeled_by: dt.date | None):
    """The champion's scores of ``day`` counted in bins (with the labels known by
    ``labeled_by``, if given); no rows when the day was not scored."""
    from pyspark.sql import functions as F

    settings, lakehouse, spark = ctx.settings, ctx.lakehouse, ctx.spark
    resolution = settings.monitor.performance.score_resolution
    event_id = settings.dataset.event_id
    scored = lakehouse.partition_rows(PREDICTIONS) if lakehouse.exists(PREDICTIONS) else {}
    if str(day) not in scored:
        empty = spark.createDataFrame([], f"`{SCORE}` double, `label` int")
        return performance.score_histogram(empty, SCORE, "label" if labeled_by else None,
                                           resolution)  # fmt: skip
    dataset = settings.dataset
    predictions = (
        lakehouse.read_days(spark, PREDICTIONS, EVENT_DATE, [day])
        .where(F.col(MODEL_ALIAS) == CHAMPION)
        .select(event_id, dataset.event_timestamp, SCORE)
    )
    if labeled_by is None:
        return performance.score_histogram(predictions.select(SCORE), SCORE, None, resolution)
    labels = (
        lakehouse.read(spark, SILVER_LABELS)
        .where((F.col(EVENT_DATE) == F.lit(day)) & (F.col(LABEL_DATE) <= F.lit(labeled_by)))
        .select(event_id, dataset.label, dataset.label_timestamp, LABEL_DATE)
        if lakehouse.exists(SILVER_LABELS)
        else spark.createDataFrame(
            [], f"`{event_id}` string, `{dataset.label}` int, "
            f"`{dataset.label_timestamp}` timestamp, {LABEL_DATE} date"
        )
    )  # fmt: skip
    # Labels as a training set with the cut-off at the end of ``labeled_by`` knows them:
    # the same boundary rule (an event whose label is still unknown has a null label,
    # which the histogram counts apart).
    cutoff = cutoff_instant(labeled_by + dt.timedelta(days=1))
    labeled = labels_as_of(predictions, labels, dataset, cutoff).select(
        SCORE, _positive(ctx).cast("int").alias("label")
    )
    return performance.score_histogram(labeled, SCORE, "label", resolution)


# -------------------------------------------------------------------------- a day
def monitor_day(ctx: StageContext, day: dt.date) -> MonitorReport:
    """Both steps of ``day`` (``regrow monitor``, the DVC stage, the demo)."""
    return MonitorReport(compute_drift(ctx, day), compute_performance(ctx, day))


def read_monitoring(ctx: StageContext, until: dt.date | None = None) -> pa.Table:
    """gold.monitoring's rows (up to ``until``), without Spark; empty if there are none."""
    lakehouse = ctx.lakehouse
    if not lakehouse.exists(MONITORING):
        return SCHEMA.empty_table()
    rows = lakehouse.to_arrow(MONITORING)
    if until is not None:
        rows = rows.filter(pc.less_equal(rows[MONITOR_DATE], pa.scalar(until, pa.date32())))
    return rows


# ------------------------------------------------------------------------- days
STEPS = ("drift", "performance")


@dataclass(frozen=True)
class DaysReport:
    """Monitoring steps of several days (one Spark application: ``jobs/monitor.py``)."""

    reports: list[StepReport]

    def as_dict(self) -> dict[str, Any]:
        return {"days": [r.as_dict() for r in self.reports]}


def monitor_days(ctx: StageContext, days: Sequence[dt.date], step: str = "all") -> DaysReport:
    """One step (``drift``, ``performance``) or ``all`` of each of ``days``, oldest first."""
    if step not in (*STEPS, "all"):
        raise ValueError(f"unknown monitoring step {step!r}: expected one of {[*STEPS, 'all']}")
    run = {"drift": compute_drift, "performance": compute_performance}
    steps = STEPS if step == "all" else (step,)
    return DaysReport([run[s](ctx, day) for day in sorted(days) for s in steps])


def unmonitored_days(ctx: StageContext) -> list[dt.date]:
    """Scored days (gold.predictions) that gold.monitoring has no row of yet, oldest first."""
    lakehouse = ctx.lakehouse
    if not lakehouse.exists(PREDICTIONS):
        return []
    scored = {dt.date.fromisoformat(d) for d in lakehouse.partition_rows(PREDICTIONS)}
    done = (
        {dt.date.fromisoformat(d) for d in lakehouse.partition_rows(MONITORING)}
        if lakehouse.exists(MONITORING)
        else set()
    )
    return sorted(scored - done)


# ------------------------------------------------------------------------ report
def report_day(ctx: StageContext, day: dt.date, log_to_mlflow: bool = True) -> Path:
    """The day's HTML report (drift table, distributions, performance over time, decisions)
    under ``reports_dir/monitoring/``, and the CSV of estimated vs realised performance for
    ``dvc plots``; the report is also logged to the champion's MLflow run."""
    from regrow.monitoring.report import write_performance_series, write_report

    settings = ctx.settings
    out = Path(settings.resolve(settings.reports_dir)) / "monitoring"
    monitoring = read_monitoring(ctx, until=day)
    decisions = _decisions_until(ctx, day)
    path = write_report(day, monitoring, decisions, out, title=f"regrow: {settings.dataset.name}")
    write_performance_series(
        monitoring, out / "performance.csv", metric=settings.evaluate.primary_metric
    )
    if log_to_mlflow:
        champion = ctx.registry.alias(CHAMPION)
        if champion is not None and champion.run_id:
            ctx.registry.log_artifact(champion.run_id, path, "monitoring")
    logger.info("monitoring report of %s: %s", day, path)
    return path


def _decisions_until(ctx: StageContext, day: dt.date) -> pa.Table:
    lakehouse = ctx.lakehouse
    if not lakehouse.exists(DECISIONS):
        return DECISIONS_SCHEMA.empty_table()
    rows = lakehouse.to_arrow(DECISIONS)
    return rows.filter(pc.less_equal(rows[DECISION_DATE], pa.scalar(day, pa.date32())))
