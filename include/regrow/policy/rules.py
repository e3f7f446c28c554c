"""The retrain policy's rules, on plain facts: which triggers fire on a day, whether the
budget and the cooldown let a retrain through, and in which mode.

Nothing here reads a table or the registry (:mod:`regrow.policy.daily` gathers the
facts), so every rule is tested on its own.

A trigger's condition is checked on each of the last ``m`` monitored days of the current
champion (the monitored day included); the trigger fires when the condition held on at
least ``n`` of them. Days monitored under an earlier champion are evidence about that
model, not this one, and do not count.

The age and the volume of evidence count from the champion's training window, or from the
last retrain request when that is newer: a retrain the gate refused was trained on
everything known that day and lost to the champion, so the same labels and the same age do
not ask again. Without this, a champion that keeps winning is retrained every time the
cooldown ends (82 of 87 retrains of a year's replay did nothing, docs/replay.md).

Drift has no such count to spend: the features stay flagged against the champion's window
whatever the gate says. So drift alone backs off instead: after each refused retrain of the
champion it waits twice as long (policy.triggers.drift.backoff_max_days), and when it does
ask again the retrain is from scratch (policy.on_refused_drift): the new trees of a warm
start, fitted on the newest days, did not reach where the inputs moved.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from regrow.model.decisions import NONE, RETRAIN_FULL, RETRAIN_WARM
from regrow.settings import PolicySettings, TriggerSettings, VolumeTrigger

AGE, VOLUME, PERFORMANCE, DRIFT = "age", "volume", "performance", "drift"


@dataclass(frozen=True)
class DayFacts:
    """What the monitor found on one day (gold.monitoring, summed up)."""

    day: dt.date
    flagged_features: tuple[str, ...] = ()
    score_flagged: bool = False
    # The champion's primary metric of the day: realised if its labels have matured on
    # this day's run, else estimated; None when neither could be measured.
    metric: float | None = None
    metric_source: str | None = None  # realised | estimated
    # Its bootstrap interval (monitor.performance.confidence), None when not measured.
    metric_interval: tuple[float, float] | None = None
    # Matured labels since the champion's training window or the last retrain request,
    # whichever is newer (:func:`label_counts`)...
    new_labels: int = 0
    # ...and those of one training window (split.window_days) ending on the matured day:
    # the volume trigger's yardstick when it is a share (policy.triggers.volume).
    window_labels: int = 0


@dataclass(frozen=True)
class ChampionFacts:
    version: str
    cutoff: dt.date | None  # its training set's cut-off (its age counts from here)
    gate_value: float | None  # the primary metric the gate accepted it on


@dataclass(frozen=True)
class TriggerResult:
    """A trigger on a day: fired or not, on which days its condition held, and the numbers."""

    name: str
    fired: bool
    violating_days: list[str]
    n: int
    m: int
    numbers: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Outcome:
    """The day's action and everything that led to it."""

    action: str
    mode: str | None
    reason: str
    triggers: list[TriggerResult]
    budget_left: int

    @property
    def fired(self) -> list[TriggerResult]:
        return [t for t in self.triggers if t.fired]


# ---------------------------------------------------------------------- conditions
def _n_of_m(
    name: str,
    cfg: TriggerSettings,
    history: Sequence[DayFacts],
    holds: Mapping[dt.date, bool],
    numbers: dict[str, Any],
    what: str,
) -> TriggerResult:
    recent = list(history)[-cfg.m :]
    violating = [str(d.day) for d in recent if holds[d.day]]
    fired = cfg.enabled and len(violating) >= cfg.n
    reason = f"{what} on {len(violating)} of the last {len(recent)} monitored day(s) (needs {cfg.n} of {cfg.m})"  # fmt: skip
    if not cfg.enabled:
        reason = f"disabled ({reason})"
    return TriggerResult(name, fired, violating, cfg.n, cfg.m, numbers, reason)


def triggers(
    policy: PolicySettings,
    history: Sequence[DayFacts],
    champion: ChampionFacts,
    higher_is_better: bool = True,
    requests: Sequence[dt.date] = (),
) -> list[TriggerResult]:
    """Every trigger on the newest day of ``history`` (oldest first, this champion's
    monitored days only, the newest last); ``requests``: the days whose decision asked for
    a retrain (the age counts from the newest one before the day, if newer than the
    champion's cut-off)."""
    today = history[-1]
    t = policy.triggers
    results = []

    def since(d: DayFacts) -> dt.date | None:
        """The cut-off of the newest training on or before ``d``: the champion's, or the
        last retrain request's (trained on everything known the day after it)."""
        last = last_request(requests, d.day)
        tried = last + dt.timedelta(days=1) if last else None
        return max([c for c in (champion.cutoff, tried) if c is not None], default=None)

    ages = {d.day: (d.day - s).days if (s := since(d)) else None for d in history}
    checked = since(today)
    counted = "its cut-off" if checked == champion.cutoff else f"the retrain cut-off {checked}"
    results.append(_n_of_m(
        AGE, t.age, history,
        {d: a is not None and a > t.age.max_days for d, a in ages.items()},
        {"age_days": ages[today.day], "max_days": t.age.max_days,
         "champion_cutoff": str(champion.cutoff) if champion.cutoff else None,
         "since": str(checked) if checked else None},
        f"champion v{champion.version} older than {t.age.max_days} days "
        f"(now {ages[today.day]}, counted from {counted})",
    ))  # fmt: skip
    needed = {d.day: volume_needed(t.volume, d.window_labels) for d in history}
    results.append(_n_of_m(
        VOLUME, t.volume, history,
        {d.day: needed[d.day] is not None and d.new_labels >= needed[d.day] for d in history},
        {"new_labels": today.new_labels, "needed": needed[today.day],
         "window_labels": today.window_labels, "min_new_labels": t.volume.min_new_labels,
         "min_window_share": t.volume.min_window_share},
        f"{today.new_labels} matured labels since the champion's window or the last retrain "
        "request " + (f"(>= {needed[today.day]} needed)" if needed[today.day] is not None
                      else "(no matured labels in a training window to measure them against)"),
    ))  # fmt: skip

    def drop(d: DayFacts) -> float | None:
        if d.metric is None or champion.gate_value is None:
            return None
        return (champion.gate_value - d.metric) * (1 if higher_is_better else -1)

    drops = {d.day: drop(d) for d in history}

    def dropped(d: DayFacts) -> bool:
        x = drops[d.day]
        if x is None or x <= t.performance.max_drop:
            return False
        return not t.performance.significant or not _within(d, champion, higher_is_better)

    results.append(_n_of_m(
        PERFORMANCE, t.performance, history, {d.day: dropped(d) for d in history},
        {"metric": today.metric, "source": today.metric_source, "gate_value": champion.gate_value,
         "drop": drops[today.day], "max_drop": t.performance.max_drop,
         "interval": list(today.metric_interval) if today.metric_interval else None,
         "significant": t.performance.significant},
        _performance_text(today, champion, drops[today.day], t.performance.max_drop),
    ))  # fmt: skip

    def drifted(d: DayFacts) -> bool:
        return len(d.flagged_features) >= t.drift.min_features or (
            t.drift.score and d.score_flagged
        )

    results.append(_n_of_m(
        DRIFT, t.drift, history, {d.day: drifted(d) for d in history},
        {"flagged_features": list(today.flagged_features), "score_flagged": today.score_flagged,
         "min_features": t.drift.min_features},
        f"{len(today.flagged_features)} feature(s) flagged"
        + (f" ({', '.join(today.flagged_features[:5])})" if today.flagged_features else "")
        + (", score drift flagged" if today.score_flagged else ""),
    ))  # fmt: skip
    return results


def volume_needed(cfg: VolumeTrigger, window_labels: int) -> int | None:
    """The new matured labels the volume trigger needs: ``min_new_labels`` when set, else
    ``min_window_share`` of a training window's matured labels (None when that window
    holds none: nothing to measure against)."""
    if cfg.min_new_labels is not None:
        return cfg.min_new_labels
    if window_labels <= 0:
        return None
    return max(1, math.ceil(cfg.min_window_share * window_labels))


def label_counts(
    rows: Mapping[dt.date, int], matured: dt.date, after: dt.date | None, window_days: int
) -> tuple[int, int]:
    """``(new, window)`` of a day whose newest matured day is ``matured``: the events of
    the days after ``after`` (every day when None) up to ``matured``, and those of the
    ``window_days`` days ending on ``matured`` (``rows``: events per day)."""
    first = matured - dt.timedelta(days=window_days - 1)
    new = sum(n for d, n in rows.items() if (after is None or d > after) and d <= matured)
    return new, sum(n for d, n in rows.items() if first <= d <= matured)


def interval(low: float | None, high: float | None) -> tuple[float, float] | None:
    """A metric's bootstrap interval for :attr:`DayFacts.metric_interval`, None when
    either end was not measured."""
    return None if low is None or high is None else (low, high)


def _within(d: DayFacts, champion: ChampionFacts, higher_is_better: bool) -> bool:
    """Whether the day's interval reaches the gate figure (its upper end at or above it;
    its lower end at or below it for a lower-is-better metric): then the drop may be the
    day's sampling noise (no interval: not known to be)."""
    if d.metric_interval is None or champion.gate_value is None:
        return False
    low, high = d.metric_interval
    return champion.gate_value <= high if higher_is_better else champion.gate_value >= low


def _performance_text(
    today: DayFacts, champion: ChampionFacts, drop: float | None, max_drop: float
) -> str:
    if champion.gate_value is None:
        return f"champion v{champion.version} has no gate figure to compare with"
    if today.metric is None:
        return "no realised or estimated metric today"
    text = (
        f"{today.metric_source} {today.metric:.4f} vs gate {champion.gate_value:.4f} "
        f"(drop {drop:+.4f}, max {max_drop})"
    )
    if today.metric_interval is not None:
        low, high = today.metric_interval
        text += f", interval [{low:.4f}, {high:.4f}]"
    return text


# ------------------------------------------------------------------------ decision
def budget_left(
    policy: PolicySettings, day: dt.date, requests: Sequence[dt.date]
) -> tuple[int, dt.date | None]:
    """Retrains left in the 7 days ending on ``day`` before today's decision, and the
    newest earlier request (``requests``: days whose decision asked for a retrain)."""
    in_week = [d for d in requests if d < day and (day - d).days < 7]
    return policy.budget_per_week - len(in_week), last_request(requests, day)


def last_request(requests: Sequence[dt.date], day: dt.date) -> dt.date | None:
    """The newest retrain request before ``day``, if any."""
    return max((r for r in requests if r < day), default=None)


def decide(
    policy: PolicySettings,
    history: Sequence[DayFacts],
    champion: ChampionFacts,
    requests: Sequence[dt.date],
    higher_is_better: bool = True,
    warm_start_cap: str | None = None,
) -> Outcome:
    """The day's action: ``none``, ``retrain_warm`` or ``retrain_full``, and why.

    Args:
        history: the champion's monitored days up to today, oldest first.
        requests: the earlier days whose decision asked for a retrain (the budget, the
                cooldown, and where age and volume count from).
        warm_start_cap: why ``train.warm_start`` forbids continuing the champion, if it does.
    """
    day = history[-1].day
    results = triggers(policy, history, champion, higher_is_better, requests)
    fired = [t for t in results if t.fired]
    left, last = budget_left(policy, day, requests)
    if not fired:
        return Outcome(NONE, None, "no trigger fired", results, max(left, 0))
    names = "+".join(t.name for t in fired)
    why = "; ".join(f"{t.name}: {t.reason}" for t in fired)
    if last is not None and (day - last).days <= policy.cooldown_days:
        return Outcome(NONE, None, (
            f"{names} fired but the cooldown holds: last retrain requested {last}, "
            f"{(day - last).days} day(s) ago (policy.cooldown_days={policy.cooldown_days}); {why}"
        ), results, max(left, 0))  # fmt: skip
    refused = _refused(champion, requests, day)
    backoff = _drift_backoff(policy, fired, refused, champion, day)
    if backoff:
        return Outcome(NONE, None, f"{backoff}; {why}", results, max(left, 0))
    if left <= 0:
        return Outcome(NONE, None, (
            f"{names} fired but the budget is spent: {policy.budget_per_week} retrain(s) "
            f"in the last 7 days (policy.budget_per_week); {why}"
        ), results, 0)  # fmt: skip
    mode, mode_why = _mode(policy, fired, warm_start_cap, len(refused))
    action = RETRAIN_WARM if mode == "warm_start" else RETRAIN_FULL
    return Outcome(action, mode, f"{why}; {mode_why}", results, left - 1)


def _refused(champion: ChampionFacts, requests: Sequence[dt.date], day: dt.date) -> list[dt.date]:
    """The retrain requests before ``day`` that did not replace the champion: those on or
    after its cut-off (a promoted retrain would have moved the cut-off past its request)."""
    if champion.cutoff is None:
        return []
    return [r for r in requests if champion.cutoff <= r < day]


def _drift_alone(fired: Sequence[TriggerResult]) -> bool:
    return [t.name for t in fired] == [DRIFT]


def _drift_backoff(
    policy: PolicySettings, fired: Sequence[TriggerResult], refused: Sequence[dt.date],
    champion: ChampionFacts, day: dt.date,
) -> str | None:  # fmt: skip
    """Why drift alone does not ask again yet, if it does not: after ``k`` refused
    retrains of the champion, drift alone waits ``cooldown_days * 2**k`` days after the
    last one, at most ``backoff_max_days``."""
    cap = policy.triggers.drift.backoff_max_days
    if cap is None or not refused or not _drift_alone(fired):
        return None
    wait = min(policy.cooldown_days * 2 ** len(refused), cap)
    since = (day - max(refused)).days
    if since > wait:
        return None
    return (
        f"drift fired alone but backs off: the gate refused {len(refused)} retrain(s) of "
        f"champion v{champion.version} since its cut-off {champion.cutoff}, the last "
        f"requested {max(refused)}, {since} day(s) ago; drift alone waits {wait} days "
        f"(policy.cooldown_days x 2^{len(refused)}, at most "
        f"policy.triggers.drift.backoff_max_days={cap})"
    )


def _mode(
    policy: PolicySettings, fired: Sequence[TriggerResult], warm_start_cap: str | None,
    refused: int = 0,
) -> tuple[str, str]:  # fmt: skip
    if policy.mode == "stateless":
        return "stateless", "from scratch: policy.mode is stateless"
    dropped = any(t.name == PERFORMANCE for t in fired)
    if dropped and policy.on_performance_drop == "stateless":
        return "stateless", (
            "from scratch: performance dropped, a concept drift "
            "(policy.on_performance_drop is stateless)"
        )
    if warm_start_cap:
        return "stateless", f"from scratch: {warm_start_cap}"
    if refused and _drift_alone(fired) and policy.on_refused_drift == "stateless":
        return "stateless", (
            f"from scratch: drift again after {refused} retrain(s) of the champion the gate "
            "refused, the inputs moved where its trees do not reach "
            "(policy.on_refused_drift is stateless)"
        )
    if dropped:
        return "warm_start", (
            "warm start from the champion: performance dropped, a concept drift; new trees "
            "learn it from the newest days"
        )
    return "warm_start", "warm start from the champion (inputs moved, the concept held)"
