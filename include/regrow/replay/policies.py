"""The retraining policies a replay compares.

- ``never``: the first model serves the whole replay (the floor: what retraining buys);
- ``daily_full``: a stateless retrain every day (the ceiling of freshness, and of compute);
- ``weekly_full``: a stateless retrain every 7 days (a time-based schedule);
- ``drift``: params.yaml's policy with only its drift trigger;
- ``performance``: params.yaml's policy with only its performance trigger;
- ``default``: params.yaml's policy as it is (warm starts as ``policy.mode`` says).

Every policy gates its challengers like the daily loop does: a retrain that does not beat
the champion on the backtest keeps the champion.
"""

from __future__ import annotations

from dataclasses import dataclass

from regrow.policy.rules import AGE, DRIFT, PERFORMANCE, VOLUME
from regrow.replay.history import ReplayError
from regrow.settings import PolicySettings

NEVER, DAILY_FULL, WEEKLY_FULL = "never", "daily_full", "weekly_full"
DRIFT_ONLY, PERFORMANCE_ONLY, DEFAULT = DRIFT, PERFORMANCE, "default"
POLICIES = (NEVER, DAILY_FULL, WEEKLY_FULL, DRIFT_ONLY, PERFORMANCE_ONLY, DEFAULT)


@dataclass(frozen=True)
class Policy:
    """A named policy: a fixed schedule (``every_days``; None with no triggers: never), or
    the triggers of ``rules`` (params.yaml's policy, some triggers switched off)."""

    name: str
    description: str
    every_days: int | None = None
    rules: PolicySettings | None = None

    @property
    def monitors(self) -> bool:
        """Whether its decisions read the monitor (drift checks cost a little per day)."""
        return self.rules is not None


def policy_named(name: str, base: PolicySettings) -> Policy:
    """The policy called ``name``, built on params.yaml's ``policy`` section.

    Raises:
        ReplayError: an unknown name, listing the valid ones.
    """
    if name == NEVER:
        return Policy(NEVER, "no retrain: the first model serves every day")
    if name == DAILY_FULL:
        return Policy(DAILY_FULL, "a stateless retrain every day", every_days=1)
    if name == WEEKLY_FULL:
        return Policy(WEEKLY_FULL, "a stateless retrain every 7 days", every_days=7)
    if name == DEFAULT:
        return Policy(DEFAULT, f"params.yaml's policy ({base.mode})", rules=base)
    if name in (DRIFT_ONLY, PERFORMANCE_ONLY):
        return Policy(name, f"params.yaml's policy, {name} trigger only",
                      rules=only_trigger(base, name))  # fmt: skip
    raise ReplayError(f"unknown policy {name!r}: choose from {', '.join(POLICIES)}")


def only_trigger(base: PolicySettings, keep: str) -> PolicySettings:
    """``base`` with every trigger but ``keep`` switched off (its n-of-m, budget and
    cooldown as configured)."""
    triggers = base.triggers
    changed = {
        name: getattr(triggers, name).model_copy(update={"enabled": name == keep})
        for name in (AGE, VOLUME, PERFORMANCE, DRIFT)
    }
    return base.model_copy(update={"triggers": triggers.model_copy(update=changed)})
