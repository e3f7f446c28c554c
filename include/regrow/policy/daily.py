"""A monitored day's decision: gather the facts (gold.monitoring, gold.decisions, the
champion's lineage, the matured labels), apply :mod:`regrow.policy.rules`, and record
exactly one ``gold.decisions`` row for the day (a rerun replaces it).

A decision to retrain is a request: the ``regrow_monitor`` DAG publishes it as the Asset
``retrain.requested`` (:meth:`PolicyReport.request`), and ``regrow_retrain`` trains in
the requested mode.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from regrow.catalog import CHAMPION, DECISION_DATE, DECISIONS, FEATURES, MONITOR_DATE
from regrow.model.decisions import (
    FORCE_PROMOTE,
    PROMOTE,
    RETRAIN_ACTIONS,
    RETRAIN_WARM,
    Decision,
    record_daily,
)
from regrow.model.registry import RegistryError
from regrow.model.training import warm_start_cap
from regrow.monitoring.monitor import matured_day, read_monitoring
from regrow.monitoring.results import (
    DRIFT,
    ESTIMATED,
    FLAGGED,
    NULL_RATE,
    OK,
    PREDICTION_DRIFT,
    REALISED,
    UNSEEN,
)
from regrow.policy.rules import (
    ChampionFacts,
    DayFacts,
    budget_left,
    decide,
    interval,
    label_counts,
    last_request,
)

if TYPE_CHECKING:
    from regrow.model.registry import Version
    from regrow.settings import Settings
    from regrow.stage import StageContext

logger = logging.getLogger(__name__)

# Metrics where lower is better: a "drop" in quality is a rise of these.
LOWER_IS_BETTER = frozenset({"log_loss", "ece"})


class PolicyError(RuntimeError):
    """A day cannot be decided: no champion, or the day has not been monitored."""


@dataclass(frozen=True)
class PolicyReport:
    day: str
    action: str
    mode: str | None
    trigger: str
    reason: str
    budget_left: int
    decision_id: str
    champion_version: str

    @property
    def retrain(self) -> bool:
        return self.action in RETRAIN_ACTIONS

    def request(self) -> dict[str, Any]:
        """The extra of the ``retrain.requested`` Asset event."""
        return {"day": self.day, "mode": self.mode, "trigger": self.trigger,
                "reason": self.reason, "decision_id": self.decision_id}  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide_day(ctx: StageContext, day: dt.date) -> PolicyReport:
    """Decide ``day`` and record the decision (replacing an earlier one of the same day).

    Raises:
        PolicyError: no champion, or no gold.monitoring rows of the champion for ``day``.
    """
    settings, lakehouse, registry = ctx.settings, ctx.lakehouse, ctx.registry
    policy, metric = settings.policy, settings.evaluate.primary_metric
    champion = registry.alias(CHAMPION)
    if champion is None:
        raise PolicyError(f"registered model {registry.name} has no {CHAMPION}: nothing to decide")
    rows = read_monitoring(ctx, until=day)
    rows = rows.filter(pc.equal(rows["champion_version"], champion.version))
    days = sorted(set(rows[MONITOR_DATE].to_pylist()))
    if day not in days:
        raise PolicyError(
            f"{day} has no gold.monitoring rows for champion v{champion.version}: monitor it "
            f"first (regrow monitor --date {day})"
        )
    t = policy.triggers
    longest = max(t.age.m, t.volume.m, t.performance.m, t.drift.m)
    requests = _requests(ctx, day)
    labels = _labels(ctx, champion, requests)
    history = [_day_facts(rows, d, metric, labels(d)) for d in days[-longest:]]
    facts = ChampionFacts(
        champion.version, _tag_date(champion, "cutoff_date"), _gate_value(ctx, champion)
    )
    higher = metric not in LOWER_IS_BETTER
    outcome = decide(policy, history, facts, requests, higher)
    if outcome.mode == "warm_start":
        cap = _warm_start_cap(ctx, champion, day)
        if cap:
            outcome = decide(policy, history, facts, requests, higher, warm_start_cap=cap)
    trigger = "+".join(t.name for t in outcome.fired) or "none"
    today = history[-1]
    decision = Decision(
        action=outcome.action,
        model_name=registry.name,
        model_version=champion.version,
        champion_before=champion.version,
        champion_after=champion.version,
        reason=outcome.reason,
        trigger=f"policy:{trigger}",
        mode=outcome.mode,
        primary_metric=metric,
        champion_value=today.metric,  # the gate figure it is compared with is in checks
        checks=[t.as_dict() for t in outcome.triggers],
        actor=ctx.actor,
        run_id=ctx.run_id,
        budget_left=outcome.budget_left,
        decision_date=day,
        decision_id=_decision_id(registry.name, day),
    )
    record_daily(lakehouse, decision)
    logger.info(
        "gold.decisions %s: %s (%s), budget left %d: %s",
        day, outcome.action, trigger, outcome.budget_left, outcome.reason,
    )  # fmt: skip
    return PolicyReport(str(day), outcome.action, outcome.mode, trigger, outcome.reason,
                        outcome.budget_left, decision.decision_id, champion.version)  # fmt: skip


def _day_facts(rows: pa.Table, day: dt.date, metric: str, labels: tuple[int, int]) -> DayFacts:
    of_day = rows.filter(pc.equal(rows[MONITOR_DATE], pa.scalar(day, pa.date32()))).to_pylist()
    flagged = sorted({r["column"] for r in of_day
                      if r["check"] in (DRIFT, NULL_RATE, UNSEEN) and r["status"] == FLAGGED})  # fmt: skip
    score = any(r["check"] == PREDICTION_DRIFT and r["status"] == FLAGGED for r in of_day)
    value, source, bounds = None, None, None
    for check, name in ((REALISED, "realised"), (ESTIMATED, "estimated")):
        found = [r for r in of_day
                 if r["check"] == check and r["column"] == metric and r["status"] == OK]  # fmt: skip
        if found and found[0]["value"] is not None:
            value, source = found[0]["value"], name
            bounds = interval(found[0]["ci_low"], found[0]["ci_high"])
            break
    return DayFacts(day, tuple(flagged), score, value, source, bounds, *labels)


def _labels(
    ctx: StageContext, champion: Version, requests: list[dt.date]
) -> Callable[[dt.date], tuple[int, int]]:
    """A monitored day's :func:`label_facts`, from silver.features' rows per day."""
    end = _tag_date(champion, "train_last_event")
    rows = {dt.date.fromisoformat(d): n for d, n in ctx.lakehouse.partition_rows(FEATURES).items()}
    return lambda day: label_facts(ctx.settings, rows, end, requests, day)


def label_facts(
    settings: Settings, rows: Mapping[dt.date, int], champion_end: dt.date | None,
    requests: Sequence[dt.date], day: dt.date,
) -> tuple[int, int]:  # fmt: skip
    """``(new_labels, window_labels)`` of ``day`` (:func:`label_counts`; ``rows``: events
    per day): new since the champion's newest training event, or since the newest day the
    last retrain requested before ``day`` could learn from, whichever is newer."""
    last = last_request(requests, day)
    learnt = (champion_end, matured_day(settings, last) if last else None)
    after = max((d for d in learnt if d is not None), default=None)
    return label_counts(rows, matured_day(settings, day), after, settings.split.window_days)


def _tag_date(version: Version, tag: str) -> dt.date | None:
    value = version.tags.get(tag)
    try:
        return dt.datetime.fromisoformat(value).date() if value else None
    except ValueError:
        return None


def _decisions(ctx: StageContext) -> pa.Table | None:
    return ctx.lakehouse.to_arrow(DECISIONS) if ctx.lakehouse.exists(DECISIONS) else None


def _gate_value(ctx: StageContext, champion: Version) -> float | None:
    """The primary metric the gate promoted the champion on (its newest promotion)."""
    decisions = _decisions(ctx)
    if decisions is None:
        return None
    found = [r for r in decisions.to_pylist()
             if r["model_version"] == champion.version and r["action"] in (PROMOTE, FORCE_PROMOTE)
             and r["challenger_value"] is not None]  # fmt: skip
    return max(found, key=lambda r: r["decided_at"])["challenger_value"] if found else None


def _requests(ctx: StageContext, day: dt.date) -> list[dt.date]:
    decisions = _decisions(ctx)
    if decisions is None:
        return []
    return [r[DECISION_DATE] for r in decisions.to_pylist()
            if r["action"] in RETRAIN_ACTIONS and r[DECISION_DATE] < day]  # fmt: skip


def _warm_start_cap(ctx: StageContext, champion: Version, day: dt.date) -> str | None:
    """Why the champion cannot be warm-started by a retrain on ``day``'s data, if so."""
    try:
        parent = ctx.registry.parent(champion)
    except RegistryError as err:
        return str(err)
    return warm_start_cap(ctx.settings.train.warm_start, parent, day + dt.timedelta(days=1))


def force_retrain(ctx: StageContext, day: dt.date, action: str) -> PolicyReport:
    """Replace ``day``'s decision by a retrain a person asked for (``force_decision`` of a
    manual regrow_monitor run): recorded as forced, with the actor, budget untouched."""
    if action not in RETRAIN_ACTIONS:
        raise PolicyError(f"force_decision must be one of {list(RETRAIN_ACTIONS)}, not {action!r}")
    registry = ctx.registry
    champion = registry.alias(CHAMPION)
    if champion is None:
        raise PolicyError(f"registered model {registry.name} has no {CHAMPION}: nothing to retrain")
    mode = "warm_start" if action == RETRAIN_WARM else "stateless"
    reason = f"forced by {ctx.actor} (force_decision={action})"
    decision = Decision(
        action=action, model_name=registry.name, model_version=champion.version,
        champion_before=champion.version, champion_after=champion.version, reason=reason,
        trigger="forced", mode=mode, forced=True, actor=ctx.actor, run_id=ctx.run_id,
        decision_date=day, decision_id=_decision_id(registry.name, day),
    )  # fmt: skip
    record_daily(ctx.lakehouse, decision)
    left, _ = budget_left(ctx.settings.policy, day, _requests(ctx, day))
    return PolicyReport(str(day), action, mode, "forced", reason, max(left, 0),
                        decision.decision_id, champion.version)  # fmt: skip


def _decision_id(model: str, day: dt.date) -> str:
    """The day's decision has one id: a rerun replaces the row under the same id."""
    return hashlib.sha256(f"{model}/policy/{day}".encode()).hexdigest()[:32]
