"""One policy, day by day, over a history: score → monitor → decide → retrain → gate.

Each day the policy's champion scores the day's events; the monitor compares the day with
the champion's reference (drift of every feature, of the score and of the matured label
rate, corrected across the day's tests as :mod:`regrow.monitoring.drift` does) and measures
its performance (estimated from the scores, realised on the newest matured day with the
labels known by then); the policy decides with :func:`regrow.policy.rules.decide` on those
facts; a retrain builds the training set of the next cut-off from the labels matured by
then, trains with :func:`regrow.model.training.train` (a warm start continues the
champion's booster), and the gate of :func:`regrow.model.evaluation.gate` decides whether
the challenger serves from the next day. These are the functions the daily DAGs call; here
they run on in-memory frames instead of tables and the registry, so a year takes minutes.

Training compute is measured as the CPU seconds of the training thread
(``time.thread_time``: XGBoost runs with ``train.nthread`` threads, 1 by default, in the
calling thread) and, deterministically, as rows x trees added.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from regrow.catalog import EVENT_DATE, derived_columns
from regrow.data.trainset import TEST, TRAIN, balance, fit_transform, split_by_time
from regrow.data.transform import TrainsetError
from regrow.model.decisions import NONE, RETRAIN_ACTIONS, RETRAIN_FULL, RETRAIN_WARM
from regrow.model.evaluation import BACKTEST, PINNED, better, evaluate, gate
from regrow.model.evaluation import metrics as eval_metrics
from regrow.model.training import (
    STATELESS,
    WARM_START,
    Model,
    Parent,
    TrainingError,
    TrainResult,
    train,
    warm_start_cap,
)
from regrow.monitoring import drift, performance
from regrow.monitoring.monitor import feature_kinds, matured_day
from regrow.monitoring.results import (
    DRIFT,
    FLAGGED,
    INSUFFICIENT,
    NULL_RATE,
    NUMERIC,
    OK,
    PREDICTION_DRIFT,
    SCORE,
    UNSEEN,
    CheckResult,
)
from regrow.policy.daily import LOWER_IS_BETTER, label_facts
from regrow.policy.rules import ChampionFacts, DayFacts, decide, interval
from regrow.replay.history import History, profile, quantile_edges
from regrow.replay.policies import Policy

logger = logging.getLogger(__name__)

Window = tuple[dt.date, dt.date]
# Days after a promotion on which the new champion is compared with the one it replaced.
FOLLOW_DAYS = 7


@dataclass
class Champion:
    """The model serving a policy, and what the policy knows about it."""

    model: Model
    version: int
    cutoff: dt.date  # its training set's cut-off: its age counts from here
    window: Window  # the days of the rows it was trained on (the monitor's reference)
    train_end: dt.datetime  # its newest training event
    gate_value: float | None  # the backtest primary metric it was accepted on
    warm_starts_in_a_row: int = 0
    trees: int = 0
    # The newest training event of a retrain from scratch the gate refused since it serves
    # (as Registry.parent finds from the versions' tags).
    refused_full_end: dt.datetime | None = None
    _reference: dict[str, Any] | None = field(default=None, repr=False)

    def parent(self) -> Parent:
        """The champion as a warm start's parent (and the warm-start caps') see it."""
        return Parent(self.model, str(self.version), self.train_end, self.warm_starts_in_a_row,
                      self.refused_full_end)  # fmt: skip


@dataclass
class Start:
    """The first model, shared by every policy of a replay, and the pinned test set."""

    champion: Champion
    pinned: pd.DataFrame
    facts: dict[str, Any]


@dataclass
class Retrain:
    """A retrain's outcome: its cost, and whether its challenger now serves."""

    mode: str | None = None
    mode_reason: str = ""
    promoted: bool = False
    gate_reason: str = ""
    cpu_seconds: float = 0.0
    seconds: float = 0.0
    rows: int = 0
    trees_added: int = 0
    error: str | None = None

    @property
    def work(self) -> int:
        """Rows x trees added: training compute that two runs count the same."""
        return self.rows * self.trees_added


@dataclass
class Followed:
    """A promotion, and the scores the model it replaced would have given the days after
    it (until the next promotion, at most :data:`FOLLOW_DAYS`): did the retrain pay?"""

    row: dict[str, Any]
    day: dt.date
    old: Model
    old_scores: dict[dt.date, np.ndarray] = field(default_factory=dict)
    closed: bool = False

    def open(self, day: dt.date) -> bool:
        return not self.closed and 0 < (day - self.day).days <= FOLLOW_DAYS


@dataclass
class PolicyRun:
    policy: str
    rows: list[dict[str, Any]]
    seconds: float


# --------------------------------------------------------------------------- training
def first_model(history: History, cutoff: dt.date) -> Start:
    """The model every policy starts from: a stateless model of ``cutoff``'s training set,
    version 1, accepted on its backtest (the replay's starting point, not a gated model).

    Raises:
        TrainsetError, TrainingError: the cut-off's training set cannot make a model
            (the message says why; ``regrow replay`` turns it into a ReplayError).
    """
    settings = history.settings
    result, splits, cpu, seconds = train_stateless(history, cutoff)
    metric = settings.evaluate.primary_metric
    backtest = evaluate(result.model, {BACKTEST: splits[TEST]}, settings.dataset, settings.evaluate)
    champion = Champion(
        result.model, 1, cutoff, *_trained_on(result.facts),
        backtest.sets[BACKTEST].get(metric), trees=result.model.trees,
    )  # fmt: skip
    facts = {
        "cutoff": str(cutoff), "train_rows": result.facts["train_rows"],
        "trees": result.model.trees, "cpu_seconds": round(cpu, 3),
        "seconds": round(seconds, 3), metric: champion.gate_value,
    }  # fmt: skip
    return Start(champion, splits[TEST], facts)


def train_stateless(
    history: History, cutoff: dt.date
) -> tuple[TrainResult, dict[str, pd.DataFrame], float, float]:
    """A stateless model of ``cutoff``'s training set: the training result, its splits,
    and the training thread's CPU seconds and wall seconds.

    Raises:
        TrainsetError, TrainingError: the cut-off's training set cannot make a model.
    """
    settings = history.settings
    splits = training_splits(history, cutoff)
    transform = fit_transform(splits[TRAIN], settings)
    started, cpu = time.perf_counter(), time.thread_time()
    result = train(splits, transform, settings.dataset, settings.train, cutoff, mode=STATELESS)
    return result, splits, time.thread_time() - cpu, time.perf_counter() - started


def training_splits(history: History, cutoff: dt.date) -> dict[str, pd.DataFrame]:
    """The train/validation/test splits of ``cutoff`` (matured labels only, split by time,
    train balanced as configured)."""
    settings = history.settings
    frame = history.matured(cutoff)
    splits = split_by_time(frame, settings.split, settings.dataset)
    splits[TRAIN] = balance(splits[TRAIN], settings.split, settings.dataset)
    return splits


def _trained_on(facts: dict[str, Any]) -> tuple[Window, dt.datetime]:
    """The days of the rows a model was trained on (the monitor's reference, as the
    ``train_window`` lineage tag) and its newest training event (``train_last_event``):
    for a warm start, the new rows only."""
    first = dt.datetime.fromisoformat(facts["train_first_event"])
    last = dt.datetime.fromisoformat(facts["train_last_event"])
    return (first.date(), last.date()), last


def retrain(
    history: History, champion: Champion, day: dt.date, mode: str, pinned: pd.DataFrame
) -> tuple[Retrain, Champion]:
    """Train on the cut-off after ``day`` (``mode``: stateless | warm_start, which falls
    back to stateless as :func:`regrow.model.training.plan_mode` says), gate the challenger
    against ``champion`` on the new backtest, and return the outcome and the champion of the
    next day."""
    settings = history.settings
    cutoff = day + dt.timedelta(days=1)
    out = Retrain()
    try:
        splits = training_splits(history, cutoff)
        transform = fit_transform(splits[TRAIN], settings)
        parent = champion.parent()
        started, cpu = time.perf_counter(), time.thread_time()
        result = train(splits, transform, settings.dataset, settings.train, cutoff, parent, mode)
        out.cpu_seconds = round(time.thread_time() - cpu, 4)
        out.seconds = round(time.perf_counter() - started, 4)
    except (TrainsetError, TrainingError) as err:
        out.error = str(err)
        out.gate_reason = f"no challenger: {err}"
        return out, champion
    out.mode, out.mode_reason = result.mode, result.mode_reason
    out.rows, out.trees_added = result.facts["train_rows"], result.facts["trees_added"]
    sets = {BACKTEST: splits[TEST], PINNED: pinned}
    mine = evaluate(result.model, sets, settings.dataset, settings.evaluate)
    theirs = evaluate(champion.model, sets, settings.dataset, settings.evaluate)
    verdict = gate(mine, theirs, {}, settings.evaluate)
    out.promoted, out.gate_reason = verdict.promote, verdict.reason
    if not verdict.promote:
        if result.mode == STATELESS:  # its trees still hold: the age cap counts from here
            _, end = _trained_on(result.facts)
            return out, replace(
                champion, refused_full_end=max(end, champion.refused_full_end or end)
            )
        return out, champion
    warm = result.mode == WARM_START
    return out, Champion(
        result.model, champion.version + 1, cutoff, *_trained_on(result.facts),
        mine.sets[BACKTEST].get(settings.evaluate.primary_metric),
        champion.warm_starts_in_a_row + 1 if warm else 0, result.model.trees,
    )  # fmt: skip


# ------------------------------------------------------------------------- monitoring
class Monitor:
    """The monitor of one policy: drift and performance of a day, from the history and the
    scores the policy's champions gave each day."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.settings = history.settings
        self.kinds = feature_kinds(self.settings)
        self.derived = set(derived_columns(self.settings.features))
        days = history.days
        lookback = self.settings.features.lookback_days()
        # The first look-back days lack the windowed features' history (as in the monitor).
        self.complete_from = days[0] + dt.timedelta(days=lookback) if days else None

    def reference_window(self, champion: Champion, day: dt.date) -> Window:
        cfg = self.settings.monitor
        current_first = day - dt.timedelta(days=cfg.window_days - 1)
        if cfg.reference == "fixed":
            return cfg.reference_start, cfg.reference_end
        if cfg.reference == "rolling":
            end = current_first - dt.timedelta(days=1)
            return end - dt.timedelta(days=cfg.reference_days - 1), end
        return champion.window

    def _reference(self, champion: Champion, window: Window) -> dict[str, Any]:
        """The reference's counts (cached per champion and window): every feature, the
        champion's scores on it, and the complete days for the windowed features."""
        cached = champion._reference
        if cached is not None and cached["window"] == window:
            return cached
        cfg = self.settings.monitor
        frame = self.history.between(*window)
        complete = frame
        if self.derived and self.complete_from is not None:
            complete = frame[frame[EVENT_DATE] >= self.complete_from]
        numeric = [c for c, k in self.kinds.items() if k == NUMERIC]
        discrete = [c for c, k in self.kinds.items() if k != NUMERIC]
        contract_numeric = [c for c in numeric if c not in self.derived]
        edges = quantile_edges(frame, contract_numeric, cfg.bins)
        edges |= quantile_edges(complete, [c for c in numeric if c in self.derived], cfg.bins)
        counts = profile(frame, {c: edges[c] for c in contract_numeric}, discrete)
        counts |= profile(complete, {c: edges[c] for c in numeric if c in self.derived}, [])
        scores = pd.DataFrame({SCORE: champion.model.predict(complete)}) if len(complete) else (
            pd.DataFrame({SCORE: np.zeros(0)})
        )  # fmt: skip
        score_edges = quantile_edges(scores, [SCORE], cfg.bins)
        cached = {
            "window": window, "edges": edges, "counts": counts, "score_edges": score_edges,
            "score": profile(scores, score_edges, [])[SCORE], "complete": len(complete),
        }  # fmt: skip
        champion._reference = cached
        return cached

    def drift(self, champion: Champion, day: dt.date, scores: np.ndarray) -> list[CheckResult]:
        """Every drift check of ``day`` against the champion's reference, corrected."""
        cfg = self.settings.monitor
        window = self.reference_window(champion, day)
        ref = self._reference(champion, window)
        first = day - dt.timedelta(days=cfg.window_days - 1)
        current = self.history.between(first, day)
        numeric = {c: e for c, e in ref["edges"].items()}
        discrete = [c for c, k in self.kinds.items() if k != NUMERIC]
        counts = profile(current, numeric, discrete)
        kinds = dict(self.kinds)
        results = []
        if not ref["complete"]:
            results += [CheckResult(DRIFT, c, k, INSUFFICIENT, detail={
                "reason": "the reference lies within the windowed features' first days"})
                for c, k in kinds.items() if c in self.derived]  # fmt: skip
            kinds = {c: k for c, k in kinds.items() if c not in self.derived}
        results += drift.column_checks(kinds, ref["counts"], counts, cfg)
        current_scores = profile(pd.DataFrame({SCORE: scores}), ref["score_edges"], [])[SCORE]
        results.append(drift.binned_drift(SCORE, ref["score"], current_scores, cfg,
                                          kind=SCORE, check=PREDICTION_DRIFT))  # fmt: skip
        results.append(self._label_drift(day, window))
        return drift.apply_correction(results, cfg)

    def _label_drift(self, day: dt.date, window: Window) -> CheckResult:
        settings = self.settings
        matured = matured_day(settings, day)
        days = [d for d in self.history.days if window[0] <= d <= window[1] and d <= matured]

        def counted(frame: pd.DataFrame) -> tuple[int, int]:
            if frame.empty:
                return 0, 0
            y = self.history.positives(frame, day)
            return len(frame), int(np.nansum(y))

        ref = counted(pd.concat([self.history.day(d) for d in days]) if days else
                      self.history.features.iloc[:0])  # fmt: skip
        return drift.label_rate_drift(
            settings.dataset.label, ref, counted(self.history.day(matured)), settings.monitor
        )

    def performance(
        self, day: dt.date, scores: np.ndarray, matured_scores: np.ndarray | None
    ) -> tuple[CheckResult | None, CheckResult | None]:
        """The primary metric estimated on ``day`` and realised on its newest matured day
        (labels known by ``day``; None when that day was not scored in the replay)."""
        settings = self.settings
        cfg, metric = settings.monitor.performance, settings.evaluate.primary_metric
        resolution = cfg.score_resolution
        estimated = None
        if metric in performance.ESTIMATED_METRICS:
            hist = performance.histogram_from_arrays(scores, None, resolution)
            estimated = performance.estimated(hist, cfg, [metric])[0]
        realised = None
        if matured_scores is not None:
            matured = matured_day(settings, day)
            y = self.history.positives(self.history.day(matured), day)
            hist = performance.histogram_from_arrays(matured_scores, y, resolution)
            realised = performance.realised(hist, cfg, [metric])[0]
        return estimated, realised


def day_facts(
    day: dt.date,
    checks: Sequence[CheckResult],
    estimated: CheckResult | None,
    realised: CheckResult | None,
    labels: tuple[int, int],
) -> DayFacts:
    """What the policy reads of a monitored day, as :mod:`regrow.policy.daily` sums up a
    day's gold.monitoring rows."""
    flagged = sorted({r.column for r in checks
                      if r.check in (DRIFT, NULL_RATE, UNSEEN) and r.status == FLAGGED})  # fmt: skip
    score = any(r.check == PREDICTION_DRIFT and r.status == FLAGGED for r in checks)
    value, source, bounds = None, None, None
    for found, name in ((realised, "realised"), (estimated, "estimated")):
        if found is not None and found.status == OK and found.value is not None:
            value, source, bounds = found.value, name, interval(found.ci_low, found.ci_high)
            break
    return DayFacts(day, tuple(flagged), score, value, source, bounds, *labels)


# ------------------------------------------------------------------------------ a run
def replay_policy(
    history: History,
    policy: Policy,
    start: Start,
    days: Sequence[dt.date],
    progress: Callable[[str, dict[str, Any]], None] | None = None,
) -> PolicyRun:
    """Run ``policy`` over ``days`` from the shared first model; one row per day."""
    settings = history.settings
    metric = settings.evaluate.primary_metric
    higher = metric not in LOWER_IS_BETTER
    monitor = Monitor(history)
    rows_per_day = history.rows_per_day()
    champion = start.champion
    scored: dict[dt.date, np.ndarray] = {}
    facts: list[DayFacts] = []  # the current champion's monitored days
    requests: list[dt.date] = []
    last_retrain = days[0] - dt.timedelta(days=1) if days else None
    rows: list[dict[str, Any]] = []
    followed: list[Followed] = []  # promotions, with the replaced model's scores after them
    started = time.perf_counter()
    for day in days:
        frame = history.day(day)
        scores = champion.model.predict(frame) if len(frame) else np.zeros(0)
        scored[day] = scores
        if followed and followed[-1].open(day) and len(frame):
            followed[-1].old_scores[day] = followed[-1].old.predict(frame)
        row: dict[str, Any] = {
            "policy": policy.name, "day": day, "model_version": champion.version,
            "model_trees": champion.trees, "rows": len(frame),
        }  # fmt: skip
        matured = matured_day(settings, day)
        estimated, realised = monitor.performance(day, scores, scored.get(matured))
        row["estimated"] = _value(estimated)
        row["realised_known"] = _value(realised)  # as known on the day (matured day)
        if policy.monitors:
            checks = monitor.drift(champion, day, scores)
            labels = label_facts(settings, rows_per_day, champion.train_end.date(), requests, day)
            facts.append(day_facts(day, checks, estimated, realised, labels))
            row["flagged"] = ", ".join(facts[-1].flagged_features) or None
            row["score_flagged"] = facts[-1].score_flagged
            action, mode, trigger, reason = _decide_by_rules(
                policy, facts, champion, requests, higher, settings, day
            )
        else:
            row["flagged"], row["score_flagged"] = None, None
            action, mode, trigger, reason = _decide_by_schedule(policy, day, last_retrain)
        row |= {"action": action, "trigger": trigger, "reason": reason}
        outcome = Retrain()
        if action in RETRAIN_ACTIONS:
            requests.append(day)
            last_retrain = day
            outcome, champion_next = retrain(history, champion, day, mode, start.pinned)
            if outcome.promoted:
                if followed:
                    followed[-1].closed = True
                followed.append(Followed(row, day, champion.model))
                facts = []
            champion = champion_next
        row |= {
            "retrained": action in RETRAIN_ACTIONS and outcome.error is None,
            "train_mode": outcome.mode, "promoted": outcome.promoted,
            "gate_reason": outcome.gate_reason or None, "train_rows": outcome.rows,
            "trees_added": outcome.trees_added, "train_work": outcome.work,
            "train_cpu_seconds": outcome.cpu_seconds, "train_seconds": outcome.seconds,
        }  # fmt: skip
        rows.append(row)
        if progress:
            progress(policy.name, row)
    _eventual_quality(history, rows, scored, days)
    _later_gains(history, followed, scored)
    return PolicyRun(policy.name, rows, round(time.perf_counter() - started, 2))


def _decide_by_schedule(
    policy: Policy, day: dt.date, last_retrain: dt.date | None
) -> tuple[str, str | None, str, str]:
    if policy.every_days is None:
        return NONE, None, "none", f"policy {policy.name}: {policy.description}"
    since = (day - last_retrain).days if last_retrain else policy.every_days
    if since >= policy.every_days:
        return RETRAIN_FULL, STATELESS, "schedule", (
            f"policy {policy.name}: {since} day(s) since the last retrain "
            f"(every {policy.every_days})"
        )  # fmt: skip
    return NONE, None, "none", f"policy {policy.name}: {since} of {policy.every_days} day(s)"


def _decide_by_rules(
    policy: Policy, facts: list[DayFacts], champion: Champion, requests: list[dt.date],
    higher: bool, settings, day: dt.date,
) -> tuple[str, str | None, str, str]:  # fmt: skip
    rules = policy.rules
    assert rules is not None
    t = rules.triggers
    longest = max(t.age.m, t.volume.m, t.performance.m, t.drift.m)
    history = facts[-longest:]
    about = ChampionFacts(str(champion.version), champion.cutoff, champion.gate_value)
    outcome = decide(rules, history, about, requests, higher)
    if outcome.mode == WARM_START:
        cap = warm_start_cap(
            settings.train.warm_start, champion.parent(), day + dt.timedelta(days=1)
        )
        if cap:
            outcome = decide(rules, history, about, requests, higher, warm_start_cap=cap)
    trigger = "+".join(t.name for t in outcome.fired) or "none"
    mode = None
    if outcome.action in RETRAIN_ACTIONS:
        mode = WARM_START if outcome.action == RETRAIN_WARM else STATELESS
    return outcome.action, mode, trigger, outcome.reason


def _value(result: CheckResult | None) -> float | None:
    if result is None or result.status != OK or result.value is None:
        return None
    return float(result.value)


def _eventual_quality(
    history: History, rows: list[dict[str, Any]], scored: dict[dt.date, np.ndarray],
    days: Sequence[dt.date],
) -> None:  # fmt: skip
    """Each day's PR-AUC and ROC-AUC on its eventually matured labels: the labels known at
    the end of the history, for days whose every label window had closed by then (None for
    the newest days, whose labels had not all matured)."""
    if not days:
        return
    settings = history.settings
    last_matured = matured_day(settings, history.days[-1])
    for row in rows:
        day = row["day"]
        row["matured"] = day <= last_matured
        row["positives"], row["pr_auc"], row["roc_auc"] = None, None, None
        if not row["matured"] or not len(scored[day]):
            continue
        y = history.positives(history.day(day), history.days[-1])
        found = eval_metrics(
            np.nan_to_num(y).astype("int32"), scored[day], settings.evaluate.calibration_bins
        )
        row["positives"], row["pr_auc"], row["roc_auc"] = (
            found["positives"],
            found["pr_auc"],
            found["roc_auc"],
        )


def _later_gains(
    history: History, followed: list[Followed], scored: dict[dt.date, np.ndarray]
) -> None:
    """Each promotion's ``later_gain``: the primary metric of the new champion minus the
    one it replaced, both scoring the same days after the promotion (their eventually
    matured labels, pooled); None when none of those days has matured labels."""
    settings = history.settings
    metric = settings.evaluate.primary_metric
    last_matured = matured_day(settings, history.days[-1])
    for follow in followed:
        days = [d for d in follow.old_scores if d <= last_matured]
        follow.row["later_gain"] = None
        if not days:
            continue
        y = np.concatenate([history.positives(history.day(d), history.days[-1]) for d in days])
        y = np.nan_to_num(y).astype("int32")
        bins = settings.evaluate.calibration_bins
        new = eval_metrics(y, np.concatenate([scored[d] for d in days]), bins).get(metric)
        old = eval_metrics(y, np.concatenate([follow.old_scores[d] for d in days]), bins).get(
            metric
        )
        if new is not None and old is not None:
            follow.row["later_gain"] = round(better(metric, new, old), 6)
