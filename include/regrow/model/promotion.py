"""Promotion: the gate's verdict applied to the registry, and the manual moves.

- :func:`decide`: gate the challenger of an evaluation report, then promote it or keep it
  in shadow; one ``gold.decisions`` row and MLflow tags;
- :func:`force_promote` and :func:`rollback`: the manual moves, recorded the same way.

Nothing is promoted, and no alias moves, unless the whole step succeeded: a failure to
reach the registry leaves every alias where it was, and a promotion whose decision row
cannot be written is undone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from regrow.catalog import CHALLENGER, CHAMPION
from regrow.model.challenger import EvaluationReport
from regrow.model.decisions import FORCE_PROMOTE, KEEP, PROMOTE, ROLLBACK, Decision, record
from regrow.model.evaluation import GateResult, gate
from regrow.model.registry import GATE_OUTCOME, KEPT, PREVIOUS_CHAMPION, Registry

if TYPE_CHECKING:
    from regrow.stage import StageContext


class PromotionError(RuntimeError):
    """A promotion or rollback cannot be done (no such version, no previous champion, or
    the champion moved since the evaluation)."""


@dataclass(frozen=True)
class GateOutcome:
    """What :func:`decide` did: promoted or kept, why, and every check the gate made."""

    promoted: bool
    reason: str
    version: str
    champion: str | None
    checks: list[dict[str, Any]] = field(default_factory=list)
    decision_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateOutcome:
        return cls(**data)


# --------------------------------------------------------------------------- decide
def decide(ctx: StageContext, report: EvaluationReport) -> GateOutcome:
    """Gate the challenger of an evaluation report; promote it or keep the champion.

    The outcome is tagged on the challenger's run and version before any alias moves, so a
    registry failure leaves the aliases as they were; a promotion whose ``gold.decisions``
    row cannot be written is undone.
    """
    settings, registry = ctx.settings, ctx.registry
    if report.already_champion:
        version = report.challenger
        return GateOutcome(False, f"v{version} is already the champion: nothing to decide",
                           version, version, [], None)  # fmt: skip
    result = gate(
        report.challenger_evaluation, report.champion_evaluation, report.baselines,
        settings.evaluate,
    )  # fmt: skip
    version, before = report.challenger, report.champion
    current = registry.alias(CHAMPION)
    current_version = current.version if current else None
    if current_version != before:
        raise PromotionError(
            f"the champion moved from v{before} to v{current_version} since the evaluation: "
            f"evaluate again"
        )
    decision = _decision(registry.name, result, report, settings.evaluate.primary_metric)
    decision.actor = ctx.actor
    _tag_outcome(registry, report.challenger_run_id, version, result)
    was_challenger = result.promote and _move_champion(registry, version, before)
    try:
        record(ctx.lakehouse, decision)
    except Exception:
        if result.promote:  # an unrecorded promotion must not stand
            _undo_promotion(registry, version, before, was_challenger)
        raise
    return GateOutcome(result.promote, result.reason, version, decision.champion_after,
                       result.checks, decision.decision_id)  # fmt: skip


def _decision(name: str, result: GateResult, report: EvaluationReport, metric: str) -> Decision:
    mine, theirs = report.primary(metric)
    version, before = report.challenger, report.champion
    return Decision(
        action=PROMOTE if result.promote else KEEP,
        model_name=name,
        model_version=version,
        champion_before=before,
        champion_after=version if result.promote else before,
        reason=result.reason,
        trigger=report.trigger or "manual",
        mode=report.mode,
        primary_metric=metric,
        challenger_value=mine,
        champion_value=theirs,
        checks=result.checks,
        run_id=report.challenger_run_id,
        trainset_sha256=report.trainset["sha256"],
    )


def _tag_outcome(registry: Registry, run_id: str | None, version: str, result: GateResult) -> None:
    tags = {GATE_OUTCOME: "promoted" if result.promote else KEPT,
            "gate.reason": result.reason}  # fmt: skip
    if run_id:
        registry.tag_run(run_id, tags)
    registry.tag_version(version, tags)


def _move_champion(registry: Registry, version: str, before: str | None) -> bool:
    """``version`` becomes champion; returns whether it was the challenger (that alias
    goes: a champion does not also score in shadow)."""
    if before:
        registry.tag_version(version, {PREVIOUS_CHAMPION: before})
    registry.tag_version(version, {"promoted_at": dt.datetime.now(dt.UTC).isoformat()})
    registry.set_alias(CHAMPION, version)
    challenger = registry.alias(CHALLENGER)
    if challenger is not None and challenger.version == version:
        registry.delete_alias(CHALLENGER)
        return True
    return False


def _undo_promotion(
    registry: Registry, version: str, before: str | None, was_challenger: bool
) -> None:
    """Put every alias back where it was and say so on the version: its promotion was
    never recorded, so it did not happen (and rollback must not follow its tags)."""
    if before:
        registry.set_alias(CHAMPION, before)
    else:
        registry.delete_alias(CHAMPION)
    if was_challenger:
        registry.set_alias(CHALLENGER, version)
    undone = {GATE_OUTCOME: "undone", "gate.reason": "the decision could not be recorded"}
    registry.tag_version(version, {**undone, **({PREVIOUS_CHAMPION: ""} if before else {})})


# ----------------------------------------------------------------- manual decisions
def force_promote(ctx: StageContext, version: str, why: str) -> Decision:
    """Make ``version`` the champion without the gate; recorded as forced, with who
    (``ctx.actor``) and why."""
    registry = ctx.registry
    if not why.strip():
        raise PromotionError("a forced promotion needs a reason (--reason)")
    target = registry.version(version)
    current = registry.alias(CHAMPION)
    before = current.version if current else None
    if before == target.version:
        raise PromotionError(f"v{version} is already the champion")
    decision = Decision(
        action=FORCE_PROMOTE, model_name=registry.name, model_version=target.version,
        champion_before=before, champion_after=target.version,
        reason=f"forced: {why.strip()}", forced=True, run_id=target.run_id,
        mode=target.tags.get("mode"), trigger="manual",
        trainset_sha256=target.tags.get("trainset_sha256"), actor=ctx.actor,
    )  # fmt: skip
    registry.tag_version(target.version, {"forced_promotion": decision.reason})
    _move_champion(registry, target.version, before)
    record(ctx.lakehouse, decision)
    return decision


def rollback(ctx: StageContext, why: str) -> Decision:
    """Move ``champion`` back to the version it replaced, and record who and why."""
    registry = ctx.registry
    if not why.strip():
        raise PromotionError("a rollback needs a reason (--reason)")
    current = registry.alias(CHAMPION)
    if current is None:
        raise PromotionError(f"{registry.name} has no champion to roll back")
    previous = current.tags.get(PREVIOUS_CHAMPION)
    if not previous:
        raise PromotionError(
            f"champion v{current.version} replaced no earlier champion: there is nothing to "
            f"roll back to (promote a version with regrow promote --force instead)"
        )
    registry.version(previous)  # it must still exist
    decision = Decision(
        action=ROLLBACK, model_name=registry.name, model_version=previous,
        champion_before=current.version, champion_after=previous,
        reason=f"rollback: {why.strip()}", run_id=current.run_id, trigger="manual",
        actor=ctx.actor,
    )  # fmt: skip
    registry.tag_version(current.version, {"rolled_back": decision.reason})
    registry.set_alias(CHAMPION, previous)
    record(ctx.lakehouse, decision)
    return decision


def describe_registry(registry: Registry) -> list[dict[str, Any]]:
    """Every version with its aliases and the lineage a reader wants first."""
    versions = registry.versions()
    return [
        {"version": v.version, "aliases": ",".join(v.aliases), "mode": v.tags.get("mode"),
         "parent": v.tags.get("parent_version") or "", "cutoff": v.tags.get("cutoff_date"),
         "gate": v.tags.get(GATE_OUTCOME, ""), "trigger": v.tags.get("trigger")}
        for v in versions
    ]  # fmt: skip
