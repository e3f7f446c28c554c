"""The retrain policy's rules on plain facts: N-of-M, the budget, the cooldown and the mode
each change the decision (each test fails if its rule is ignored)."""

from __future__ import annotations

import datetime as dt

import pytest

from regrow.model.decisions import NONE, RETRAIN_FULL, RETRAIN_WARM
from regrow.policy.rules import (
    AGE,
    DRIFT,
    PERFORMANCE,
    VOLUME,
    ChampionFacts,
    DayFacts,
    budget_left,
    decide,
    label_counts,
)
from regrow.settings import PolicySettings

DAY0 = dt.date(2026, 3, 1)
CHAMPION = ChampionFacts("3", cutoff=DAY0 - dt.timedelta(days=2), gate_value=0.40)


def policy(**triggers) -> PolicySettings:
    """Only the named triggers on (with their settings); the rest off."""
    base = {name: {"enabled": False} for name in (AGE, VOLUME, PERFORMANCE, DRIFT)}
    base |= {name: {"enabled": True, **cfg} for name, cfg in triggers.items()}
    return PolicySettings(triggers=base, budget_per_week=2, cooldown_days=3)


def days(*drifted: bool, metric: float | None = None) -> list[DayFacts]:
    """Consecutive days; a True day has two flagged features."""
    return [
        DayFacts(
            DAY0 + dt.timedelta(days=k),
            ("amount", "country") if flagged else (),
            metric=metric,
            metric_source="estimated" if metric is not None else None,
        )
        for k, flagged in enumerate(drifted)
    ]


@pytest.mark.parametrize(
    ("pattern", "n", "m", "action"),
    [
        ((False, False, True), 2, 3, NONE),  # one drifted day of three: a blip
        ((False, True, True), 2, 3, RETRAIN_WARM),
        ((True, False, True), 2, 3, RETRAIN_WARM),  # not necessarily consecutive
        ((True, True, False), 2, 3, RETRAIN_WARM),  # today is calm, 2 of the last 3 were not
        ((True, True, False, False), 2, 3, NONE),  # the oldest violation left the window
        ((False, False, True), 1, 1, RETRAIN_WARM),
    ],
)
def test_drift_fires_on_n_of_the_last_m_days(pattern, n, m, action):
    outcome = decide(
        policy(drift={"n": n, "m": m, "min_features": 2}), days(*pattern), CHAMPION, []
    )
    assert outcome.action == action
    drift = next(t for t in outcome.triggers if t.name == DRIFT)
    assert drift.fired == (action != NONE)
    assert len(drift.violating_days) == sum(pattern[-m:])


def test_fewer_features_than_min_features_is_no_drift():
    outcome = decide(policy(drift={"min_features": 3}), days(True), CHAMPION, [])
    assert outcome.action == NONE


def test_score_drift_alone_fires_when_configured():
    history = [DayFacts(DAY0, (), score_flagged=True)]
    assert decide(policy(drift={"score": True}), history, CHAMPION, []).action == RETRAIN_WARM
    assert decide(policy(drift={"score": False}), history, CHAMPION, []).action == NONE


def test_budget_spent_keeps_the_champion_and_says_so():
    today = days(True)
    requests = [DAY0 - dt.timedelta(days=5), DAY0 - dt.timedelta(days=4)]
    spent = decide(policy(drift={}), today, CHAMPION, requests).action
    assert spent == NONE
    outcome = decide(policy(drift={}), today, CHAMPION, requests)
    assert "budget is spent" in outcome.reason and outcome.budget_left == 0
    # A week later the same requests are out of the 7-day window: the budget is back.
    later = [DayFacts(DAY0 + dt.timedelta(days=3), ("a", "b"))]
    assert decide(policy(drift={}), later, CHAMPION, requests).action == RETRAIN_WARM


def test_budget_left_counts_the_last_seven_days_only():
    requests = [DAY0 - dt.timedelta(days=d) for d in (1, 6, 7, 30)]
    left, last = budget_left(PolicySettings(budget_per_week=3), DAY0, requests)
    assert (left, last) == (1, DAY0 - dt.timedelta(days=1))


def test_cooldown_holds_a_trigger_back():
    today = days(True)
    recent = [DAY0 - dt.timedelta(days=2)]  # within cooldown_days=3
    outcome = decide(policy(drift={}), today, CHAMPION, recent)
    assert outcome.action == NONE and "cooldown" in outcome.reason
    past = [DAY0 - dt.timedelta(days=4)]  # the cooldown is over
    assert decide(policy(drift={}), today, CHAMPION, past).action == RETRAIN_WARM


def _drifted(after: int, metric: float | None = None) -> list[DayFacts]:
    """One day, ``after`` days after DAY0, with two flagged features."""
    return [DayFacts(DAY0 + dt.timedelta(days=after), ("amount", "country"), metric=metric,
                     metric_source="realised" if metric is not None else None)]  # fmt: skip


def test_drift_alone_backs_off_after_each_retrain_the_gate_refused():
    cfg = policy(drift={})  # cooldown_days=3, backoff_max_days 24
    refused = [DAY0 - dt.timedelta(days=1)]  # on or after the champion's cut-off (DAY0 - 2)
    held = decide(cfg, _drifted(5), CHAMPION, refused)  # 6 days since: 3 x 2^1 holds
    assert held.action == NONE
    assert "backs off" in held.reason and "refused 1 retrain(s) of champion v3" in held.reason
    assert "waits 6 days" in held.reason and "backoff_max_days=24" in held.reason
    assert decide(cfg, _drifted(6), CHAMPION, refused).action == RETRAIN_FULL
    # Three refused: 3 x 2^3 = 24 days, the cap.
    three = [DAY0 - dt.timedelta(days=1), DAY0 + dt.timedelta(days=6), DAY0 + dt.timedelta(days=18)]
    assert decide(cfg, _drifted(42), CHAMPION, three).action == NONE
    assert decide(cfg, _drifted(43), CHAMPION, three).action == RETRAIN_FULL
    capped = policy(drift={"backoff_max_days": 10})
    assert decide(capped, _drifted(28), CHAMPION, three).action == NONE
    assert decide(capped, _drifted(29), CHAMPION, three).action == RETRAIN_FULL
    # Off: drift asks again after every cooldown.
    off = policy(drift={"backoff_max_days": None})
    assert decide(off, _drifted(3), CHAMPION, refused).action == RETRAIN_FULL


def test_the_backoff_counts_only_refused_retrains_and_only_drift_alone():
    cfg = policy(drift={}, performance={})
    # The retrain that produced the champion (the day before its cut-off) was not refused.
    produced = [CHAMPION.cutoff - dt.timedelta(days=1)]
    assert decide(cfg, _drifted(1), CHAMPION, produced).action == RETRAIN_WARM
    # A performance drop beside the drift is new evidence every day: no backoff.
    refused = [DAY0 - dt.timedelta(days=1)]
    dropped = decide(cfg, _drifted(3, metric=0.30), CHAMPION, refused)
    assert dropped.action == RETRAIN_WARM and {t.name for t in dropped.fired} == {
        DRIFT,
        PERFORMANCE,
    }
    # A champion without a cut-off has nothing to count from.
    unknown = ChampionFacts("3", cutoff=None, gate_value=0.40)
    assert decide(cfg, _drifted(3), unknown, refused).action == RETRAIN_WARM


def test_drift_asking_again_after_a_refused_retrain_retrains_from_scratch():
    cfg = policy(drift={})
    refused = [DAY0 - dt.timedelta(days=1)]
    again = decide(cfg, _drifted(6), CHAMPION, refused)
    assert again.action == RETRAIN_FULL and again.mode == "stateless"
    assert "after 1 retrain(s) of the champion the gate refused" in again.reason
    assert "policy.on_refused_drift is stateless" in again.reason
    warm = cfg.model_copy(update={"on_refused_drift": "warm_start"})
    assert decide(warm, _drifted(6), CHAMPION, refused).action == RETRAIN_WARM
    # The first ask of the champion is warm; so is drift beside another trigger (age here:
    # 7 days since the last request > max_days 1).
    assert decide(cfg, _drifted(6), CHAMPION, []).action == RETRAIN_WARM
    both = decide(policy(drift={}, age={"max_days": 1}), _drifted(6), CHAMPION, refused)
    assert {t.name for t in both.fired} == {AGE, DRIFT} and both.action == RETRAIN_WARM


def test_a_retrain_spends_the_budget_it_reports():
    outcome = decide(policy(drift={}), days(True), CHAMPION, [])
    assert outcome.action == RETRAIN_WARM and outcome.budget_left == 1


def test_a_performance_drop_is_a_concept_drift_retrained_warm_unless_told_otherwise():
    history = days(False, False, metric=0.30)  # gate 0.40: a drop of 0.10 > 0.05
    cfg = policy(performance={"n": 2, "m": 3})
    outcome = decide(cfg, history, CHAMPION, [])
    assert outcome.action == RETRAIN_WARM and outcome.mode == "warm_start"
    assert "concept drift" in outcome.reason and "newest days" in outcome.reason
    scratch = cfg.model_copy(update={"on_performance_drop": "stateless"})
    outcome = decide(scratch, history, CHAMPION, [])
    assert outcome.action == RETRAIN_FULL and outcome.mode == "stateless"
    assert "policy.on_performance_drop is stateless" in outcome.reason
    capped = decide(cfg, history, CHAMPION, [], warm_start_cap="800 trees")
    assert capped.action == RETRAIN_FULL and "800 trees" in capped.reason
    # Drift alone is warm whatever on_performance_drop says.
    assert decide(scratch.model_copy(update={"triggers": policy(drift={}).triggers}),
                  days(True), CHAMPION, []).action == RETRAIN_WARM  # fmt: skip
    small = days(False, False, metric=0.38)
    assert decide(cfg, small, CHAMPION, []).action == NONE


def test_lower_is_better_metrics_drop_upwards():
    champion = ChampionFacts("3", None, gate_value=0.10)  # log loss at the gate
    worse = days(False, metric=0.20)
    cfg = policy(performance={})
    assert decide(cfg, worse, champion, [], higher_is_better=False).action == RETRAIN_WARM
    assert decide(cfg, worse, champion, [], higher_is_better=True).action == NONE


def test_without_a_gate_figure_performance_cannot_fire():
    champion = ChampionFacts("3", None, gate_value=None)
    outcome = decide(policy(performance={}), days(False, metric=0.0), champion, [])
    assert outcome.action == NONE
    assert "no gate figure" in next(t for t in outcome.triggers if t.name == PERFORMANCE).reason


@pytest.mark.parametrize(
    ("interval", "significant", "action"),
    [
        ((0.25, 0.36), True, RETRAIN_WARM),  # the gate's 0.40 above the whole interval
        ((0.22, 0.41), True, NONE),  # 0.40 inside it: a drop of 0.10 that noise can make
        ((0.22, 0.41), False, RETRAIN_WARM),  # the point figure alone, when asked for
        (None, True, RETRAIN_WARM),  # no interval measured: the point figure decides
    ],
)
def test_a_drop_inside_the_days_interval_is_noise(interval, significant, action):
    history = [DayFacts(DAY0, (), metric=0.30, metric_source="realised", metric_interval=interval)]
    cfg = policy(performance={"significant": significant})
    outcome = decide(cfg, history, CHAMPION, [])
    assert outcome.action == action
    performance = next(t for t in outcome.triggers if t.name == PERFORMANCE)
    assert performance.numbers["interval"] == (list(interval) if interval else None)
    if interval:
        assert f"interval [{interval[0]:.4f}, {interval[1]:.4f}]" in performance.reason


def test_lower_is_better_noise_is_the_gate_below_the_interval():
    champion = ChampionFacts("3", None, gate_value=0.10)  # log loss at the gate
    cfg = policy(performance={})
    for interval, action in (((0.16, 0.25), RETRAIN_WARM), ((0.09, 0.25), NONE)):
        worse = [DayFacts(DAY0, (), metric=0.20, metric_source="realised",
                          metric_interval=interval)]  # fmt: skip
        assert decide(cfg, worse, champion, [], higher_is_better=False).action == action


def test_age_and_volume():
    old = [DayFacts(DAY0 + dt.timedelta(days=40), ())]
    assert decide(policy(age={"max_days": 30}), old, CHAMPION, []).action == RETRAIN_WARM
    assert decide(policy(age={"max_days": 60}), old, CHAMPION, []).action == NONE
    labels = [DayFacts(DAY0, (), new_labels=25_000)]
    assert (
        decide(policy(volume={"min_new_labels": 20_000}), labels, CHAMPION, []).action
        == RETRAIN_WARM
    )
    assert decide(policy(volume={"min_new_labels": 30_000}), labels, CHAMPION, []).action == NONE


@pytest.mark.parametrize(
    ("new", "window", "share", "action"),
    [
        (25_000, 30_000, 1.0, NONE),  # fewer new labels than a training window holds
        (30_000, 30_000, 1.0, RETRAIN_WARM),
        (25_000, 30_000, 0.8, RETRAIN_WARM),
        (25_000, 0, 1.0, NONE),  # no matured labels in a window: nothing to measure against
    ],
)
def test_volume_as_a_share_of_a_training_window(new, window, share, action):
    today = [DayFacts(DAY0, (), new_labels=new, window_labels=window)]
    outcome = decide(policy(volume={"min_window_share": share}), today, CHAMPION, [])
    assert outcome.action == action
    volume = next(t for t in outcome.triggers if t.name == VOLUME)
    assert volume.numbers["needed"] == (None if window == 0 else round(share * window))


def test_a_refused_retrain_restarts_the_age():
    """The champion is 40 days past its cut-off; a retrain requested 10 days ago (out of
    the cooldown) trained on everything known then and lost to it: age 9 is not 30."""
    old = [DayFacts(DAY0 + dt.timedelta(days=40), ())]
    asked = [DAY0 + dt.timedelta(days=30)]
    assert decide(policy(age={"max_days": 30}), old, CHAMPION, []).action == RETRAIN_WARM
    outcome = decide(policy(age={"max_days": 30}), old, CHAMPION, asked)
    assert outcome.action == NONE
    age = next(t for t in outcome.triggers if t.name == AGE)
    assert age.numbers["age_days"] == 9 and str(asked[0] + dt.timedelta(days=1)) in age.reason


def test_new_labels_count_from_the_newest_learnt_day():
    rows = {DAY0 + dt.timedelta(days=k): 100 * (k + 1) for k in range(10)}  # 100..1000
    matured = DAY0 + dt.timedelta(days=7)
    assert label_counts(rows, matured, None, 3) == (sum(range(100, 801, 100)), 600 + 700 + 800)
    assert label_counts(rows, matured, DAY0 + dt.timedelta(days=5), 3) == (700 + 800, 2100)
    assert label_counts(rows, matured, matured, 30) == (0, sum(range(100, 801, 100)))


def test_warm_start_cap_or_stateless_policy_forces_a_full_retrain():
    capped = decide(policy(drift={}), days(True), CHAMPION, [], warm_start_cap="800 trees")
    assert capped.action == RETRAIN_FULL and "800 trees" in capped.reason
    stateless = PolicySettings(triggers=policy(drift={}).triggers, mode="stateless")
    assert decide(stateless, days(True), CHAMPION, []).action == RETRAIN_FULL


def test_disabled_triggers_never_fire():
    outcome = decide(policy(), days(True, True, True, metric=0.0), CHAMPION, [])
    assert outcome.action == NONE and not outcome.fired


def test_n_greater_than_m_is_a_config_error():
    with pytest.raises(ValueError, match="cannot exceed"):
        PolicySettings(triggers={"drift": {"n": 3, "m": 2}})
