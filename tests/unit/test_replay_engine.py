"""The replay engine on an in-memory history (no Spark: the simulator's days as silver
leaves them, without windowed features): a policy never sees a label before it matured,
two runs give the same scoreboard, the policies decide as named, bad names fail at once,
the value of freshness scores each day with the model of the cut-off k days before it, and
the scoreboard page holds its tables and plots.
"""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser

import pandas as pd
import pytest

from regrow.catalog import EVENT_DATE, LABEL_DATE
from regrow.data.labels import cutoff_instant
from regrow.model.decisions import NONE, RETRAIN_ACTIONS, RETRAIN_FULL
from regrow.model.evaluation import metrics as eval_metrics
from regrow.model.training import WARM_START, Parent, train
from regrow.replay.engine import first_model, replay_policy, train_stateless, training_splits
from regrow.replay.freshness import replay_rows, value_of_freshness
from regrow.replay.history import History, ReplayError
from regrow.replay.policies import POLICIES, policy_named
from regrow.replay.run import check_choices
from regrow.replay.scoreboard import MEASURED, summarise, write_scoreboard
from regrow.settings import ConfigError, load_settings
from tests.bronze_rows import simulated as simulated_days
from tests.conftest import write_params

START, DAYS, ONSET, WARMUP = dt.date(2026, 1, 1), 26, 15, 11
SECTIONS = {
    "dataset": {"label_delay_days": 3},
    "simulator": {"start_date": START, "days": DAYS, "events_per_day": 500, "n_entities": 700,
                  "mean_label_delay_days": 1.0, "scenario": "covariate_shift",
                  "drift_onset_day": ONSET},
    "features": {"windows": [], "sum_columns": [], "ratio_columns": []},
    "split": {"window_days": 14, "test_days": 2, "validation_days": 2},
    "train": {"num_boost_round": 60, "min_rows": 300, "warm_start": {"new_trees": 20}},
    "evaluate": {"min_slice_rows": 100},
    "monitor": {"min_rows": 200, "performance": {"bootstrap": 20, "min_positives": 5}},
    # Drift alone: a 500-event day's realised PR-AUC is too noisy for a performance trigger.
    "policy": {"triggers": {"drift": {"n": 1, "m": 1}, "performance": {"enabled": False},
                            "age": {"enabled": False}, "volume": {"enabled": False}}},
}  # fmt: skip
# What a day's decision is made of: every column but the eventual quality, which is
# measured at the end of the history on purpose.
DECIDED = ("model_version", "model_trees", "rows", "estimated", "realised_known", "flagged",
           "score_flagged", "action", "trigger", "reason", "retrained", "train_mode",
           "promoted", "gate_reason", "train_rows", "trees_added")  # fmt: skip


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return load_settings(write_params(tmp_path_factory.mktemp("replay"), **SECTIONS))


@pytest.fixture(scope="module")
def simulated(settings):
    dataset = settings.dataset
    events, labels = simulated_days(settings, DAYS, end=START + dt.timedelta(days=DAYS))
    labels = labels.drop(columns=[dataset.entity_id]).reset_index(drop=True)
    labels[LABEL_DATE] = labels[dataset.label_timestamp].dt.date
    features = events[[*dataset.id_columns(), *dataset.features]].copy()
    features[EVENT_DATE] = features[dataset.event_timestamp].dt.date
    return features, labels


def history_of(settings, simulated, labels=None) -> History:
    features, landed = simulated
    return History(settings, features.copy(), (landed if labels is None else labels).copy())


def scored_days():
    return [START + dt.timedelta(days=i) for i in range(WARMUP, DAYS)]


def replayed(settings, history, names=("default", "daily_full", "never")):
    start = first_model(history, START + dt.timedelta(days=WARMUP))
    return [replay_policy(history, policy_named(n, settings.policy), start, scored_days())
            for n in names]  # fmt: skip


@pytest.fixture(scope="module")
def runs(settings, simulated):
    return replayed(settings, history_of(settings, simulated))


def decided(run, until: dt.date) -> list[tuple]:
    return [tuple(row.get(c) for c in DECIDED) for row in run.rows if row["day"] <= until]


def test_no_policy_sees_a_label_before_it_matured(settings, simulated, runs):
    """Labels that arrived after day X are rewritten (every one flipped, and every
    unlabelled event of the history labelled positive from X + 1 on): nothing any policy
    decided, trained or measured on the days up to X may change. The control rewrites the
    labels that arrived on day X itself, which the decision of day X may use: something
    must change, or this test could not see a peek."""
    dataset = settings.dataset
    features, labels = simulated
    x = START + dt.timedelta(days=DAYS - 6)
    later = cutoff_instant(x + dt.timedelta(days=1))

    def flipped(where) -> pd.DataFrame:
        out = labels.copy()
        out.loc[where, dataset.label] = 1 - out.loc[where, dataset.label]
        return out

    after = labels[dataset.label_timestamp] >= later
    poisoned = flipped(after)
    unlabelled = features[~features[dataset.event_id].isin(labels[dataset.event_id])]
    fake = pd.DataFrame({
        dataset.event_id: unlabelled[dataset.event_id],
        dataset.label: 1,
        dataset.label_timestamp: later + pd.Timedelta(hours=1),
        LABEL_DATE: x + dt.timedelta(days=1),
    })  # fmt: skip
    poisoned = pd.concat([poisoned, fake], ignore_index=True)
    for before, after_run in zip(runs, replayed(settings, history_of(settings, simulated, poisoned)),
                                 strict=True):  # fmt: skip
        assert decided(before, x) == decided(after_run, x), before.policy
        assert any(r["retrained"] for r in before.rows if r["day"] <= x) or before.policy == "never"

    on_x = labels[dataset.label_timestamp].between(cutoff_instant(x - dt.timedelta(days=2)), later,
                                                   inclusive="left")  # fmt: skip
    control = replayed(settings, history_of(settings, simulated, flipped(on_x)), ("default",))
    assert decided(runs[0], x) != decided(control[0], x)


def test_two_replays_give_the_same_scoreboard(settings, simulated, runs):
    again = replayed(settings, history_of(settings, simulated))

    def counted(rows: list[dict]) -> list[dict]:  # without the measured seconds
        return [{k: v for k, v in r.items() if k not in MEASURED and not k.endswith("seconds")}
                for r in rows]  # fmt: skip

    assert counted(summarise(runs)) == counted(summarise(again))
    for a, b in zip(runs, again, strict=True):
        assert counted(a.rows) == counted(b.rows)


def test_a_warm_start_does_not_depend_on_what_its_thread_trained_before(settings, simulated):
    """XGBoost's random engine (subsample, colsample_*) is one per thread, and a warm start
    from a booster in memory, as the replay's champions are, did not reseed it: the same
    warm start gave other trees each time the thread had trained since. The replay's
    policies share a thread, so a policy's models depended on which others ran before it."""
    history = history_of(settings, simulated)
    parent_cutoff, cutoff = START + dt.timedelta(days=WARMUP), START + dt.timedelta(days=DAYS - 3)
    trained, _, _, _ = train_stateless(history, parent_cutoff)
    parent = Parent(
        trained.model, "1", dt.datetime.fromisoformat(trained.facts["train_last_event"])
    )
    splits = training_splits(history, cutoff)

    def warm() -> list[str]:
        result = train(splits, parent.model.transform, settings.dataset, settings.train, cutoff,
                       parent, WARM_START)  # fmt: skip
        assert result.mode == WARM_START and result.facts["trees_added"] > 1
        return result.model.booster.get_dump()

    first = warm()
    assert warm() == first  # it drew from where the first one left the engine: 7 trees, not 4
    train_stateless(history, cutoff)  # another model, on the same thread
    assert warm() == first


def test_the_policies_act_as_named(runs):
    default, daily, never = runs
    assert all(r["action"] == NONE and not r["retrained"] for r in never.rows)
    assert {r["model_version"] for r in never.rows} == {1}
    assert all(r["action"] == RETRAIN_FULL and r["train_mode"] == "stateless" for r in daily.rows)
    # The covariate shift from ONSET: the default policy retrains after it, not before.
    onset = START + dt.timedelta(days=ONSET)
    retrains = [r for r in default.rows if r["action"] in RETRAIN_ACTIONS]
    assert retrains and all(r["day"] >= onset for r in retrains)
    assert all(r["trigger"] != "none" and r["reason"] for r in retrains)
    board = {b["policy"]: b for b in summarise(runs)}
    assert board["never"]["train_work"] == 0 and board["never"]["retrains"] == 0
    assert board["daily_full"]["retrains"] == len(scored_days())
    assert 0 < board["default"]["train_work"] < board["daily_full"]["train_work"]
    assert board["daily_full"]["work_vs_daily_full"] == 1.0
    # Scored days whose labels all matured by the end carry the realised quality.
    matured = [r for r in default.rows if r["matured"]]
    assert matured and all(r["pr_auc"] is not None for r in matured)
    assert all(r["pr_auc"] is None for r in default.rows if not r["matured"])


def test_only_the_named_trigger_stays_on(settings):
    drift = policy_named("drift", settings.policy).rules
    assert drift.triggers.drift.enabled and drift.triggers.drift.n == 1
    assert not any(getattr(drift.triggers, t).enabled for t in ("age", "volume", "performance"))
    performance = policy_named("performance", settings.policy).rules
    assert performance.triggers.performance.enabled and not performance.triggers.drift.enabled
    assert policy_named("default", settings.policy).rules == settings.policy


def test_unknown_policies_and_scenarios_fail_listing_the_choices():
    with pytest.raises(ReplayError, match="unknown policy 'sometimes': choose from never, "
                       "daily_full, weekly_full, drift, performance, default"):  # fmt: skip
        check_choices(["default", "sometimes"], None)
    with pytest.raises(ReplayError, match=r"unknown scenario 'tsunami': choose from stable, "
                       r"covariate_shift, .*concept_drift"):  # fmt: skip
        check_choices(["never"], "tsunami")
    with pytest.raises(ReplayError, match="no policy given"):
        check_choices([], None)
    check_choices([], None, freshness=True)  # the value of freshness alone is a replay
    assert set(POLICIES) == {"never", "daily_full", "weekly_full", "drift", "performance",
                             "default"}  # fmt: skip


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.tags: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_cell = tag in ("td", "th")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data):
        if self._in_cell and data.strip():
            self.cells.append(data.strip())


def test_the_scoreboard_page_holds_the_table_and_the_plots(runs, tmp_path):
    board = summarise(runs)
    truth = {"scenario": "covariate_shift", "onset_date": str(START + dt.timedelta(days=ONSET))}
    page = write_scoreboard(tmp_path / "board.html", "test-replay", "covariate_shift", runs, board,
                            truth, {"cutoff": "2026-01-12", "trees": 40})  # fmt: skip
    html = page.read_text(encoding="utf-8")
    parsed = _Page()
    parsed.feed(html)
    for heading in ("policy", "mean PR-AUC", "retrains", "promotions", "false retrains",
                    "rows x trees", "training CPU-s", "quality / daily_full"):  # fmt: skip
        assert heading in parsed.cells
    for run, b in zip(runs, board, strict=True):
        assert run.policy in parsed.cells
        assert f"{b['mean_pr_auc']:.4f}" in parsed.cells
    assert parsed.tags.count("svg") == 2  # daily quality, and the frontier
    assert "true drift onset 2026-01-16" in html


def test_a_history_without_the_day_is_refused(settings, simulated, tmp_path):
    from regrow.replay.history import load_history
    from regrow.storage.lakehouse import Lakehouse

    empty = Lakehouse(settings.lakehouse, root=str(tmp_path / "none"))
    with pytest.raises(ReplayError, match=r"silver.features has no partition for 2 day\(s\)"):
        load_history(settings, empty, [START, START + dt.timedelta(days=1)])


def test_tables_built_under_other_settings_are_not_reused(settings, tmp_path):
    from regrow.replay.run import check_built_under

    root = tmp_path / "lakehouse"
    check_built_under(settings, root)  # records what they are built under
    check_built_under(settings, root)  # the same settings: the days are reused
    other = settings.model_copy(
        update={"features": settings.features.model_copy(update={"windows": ["1h"]})}
    )
    with pytest.raises(ReplayError, match="built under other dataset, landing or features "
                       f"settings than params.yaml's now: remove {root}"):  # fmt: skip
        check_built_under(other, root)


STALENESS = [5, 0, 2, 2]  # as a user may write it: unsorted, repeated


@pytest.fixture(scope="module")
def freshness(settings, simulated):
    history = history_of(settings, simulated)
    first = START + dt.timedelta(days=WARMUP)
    return history, value_of_freshness(history, STALENESS, scored_days(), first)


def test_freshness_scores_each_day_with_the_model_of_the_cutoff_k_days_before(freshness):
    """Every staleness scores the same days: those whose stalest model's cut-off is at or
    after the first model's. A row's quality is that of the stateless model of its day's
    cut-off minus k, trained again here; the model of the next cut-off gives another
    quality (the control: otherwise this test could not tell the cut-offs apart)."""
    history, found = freshness
    first = START + dt.timedelta(days=WARMUP)
    assert found.staleness == [0, 2, 5]
    assert found.days == [d for d in scored_days() if d >= first + dt.timedelta(days=5)]
    assert found.models == len({d - dt.timedelta(days=k) for d in found.days for k in (0, 2, 5)})
    assert [(r["staleness_days"], r["day"]) for r in found.rows] == [
        (k, d) for k in (0, 2, 5) for d in found.days
    ]
    matured = [r for r in found.rows if r["matured"]]
    assert matured and all(r["pr_auc"] is not None and r["error"] is None for r in matured)
    assert all(r["pr_auc"] is None for r in found.rows if not r["matured"])

    def quality(cutoff: dt.date, day: dt.date) -> float:
        result, *_ = train_stateless(history, cutoff)
        frame = history.day(day)
        y = history.positives(frame, history.days[-1]).astype("int32")
        return eval_metrics(y, result.model.predict(frame), 10)["pr_auc"]

    row = next(r for r in matured if r["staleness_days"] == 2)
    assert row["cutoff"] == row["day"] - dt.timedelta(days=2)
    assert row["pr_auc"] == pytest.approx(quality(row["cutoff"], row["day"]), abs=1e-12)
    assert row["pr_auc"] != quality(row["cutoff"] + dt.timedelta(days=1), row["day"])


def test_freshness_is_summed_up_per_staleness_and_recorded_as_series(freshness, settings):
    _, found = freshness
    by_k = {s["staleness_days"]: s for s in found.summary}
    assert list(by_k) == [0, 2, 5]
    measured = sum(1 for d in found.days if d <= max(r["day"] for r in found.rows if r["matured"]))
    assert all(s["days_measured"] == measured for s in found.summary)
    assert by_k[0]["pr_auc_vs_freshest"] == 1.0
    assert by_k[5]["pr_auc_vs_freshest"] == pytest.approx(
        by_k[5]["mean_pr_auc"] / by_k[0]["mean_pr_auc"]
    )
    rows = replay_rows(found)
    assert {r["policy"] for r in rows} == {"freshness_0d", "freshness_2d", "freshness_5d"}
    assert all(r["action"] == "none" and not r["retrained"] for r in rows)
    stale = next(r for r in rows if r["policy"] == "freshness_5d")
    assert f"cut-off {stale['day'] - dt.timedelta(days=5)} (5 day(s) stale)" in stale["reason"]


def test_too_few_days_for_the_stalest_model_are_refused(settings, simulated):
    history = history_of(settings, simulated)
    with pytest.raises(ReplayError, match=r"replay.freshness_days goes up to 30 day\(s\) of "
                       r"staleness, but only 15 day\(s\) follow the warm-up"):  # fmt: skip
        value_of_freshness(history, [0, 30], scored_days(), START + dt.timedelta(days=WARMUP))


def test_freshness_days_are_days_of_staleness(tmp_path):
    with pytest.raises(ConfigError, match="replay.freshness_days are days of staleness"):
        load_settings(write_params(tmp_path, replay={"freshness_days": [0, -3]}))


def test_the_page_holds_the_value_of_freshness(runs, freshness, tmp_path):
    _, found = freshness
    for with_policies in (runs, []):
        board = summarise(with_policies)
        page = write_scoreboard(tmp_path / "board.html", "test-replay", "stable", with_policies,
                                board, {}, {"cutoff": "2026-01-12", "trees": 40}, found)  # fmt: skip
        html = page.read_text(encoding="utf-8")
        parsed = _Page()
        parsed.feed(html)
        assert "The value of freshness" in html
        for k in ("0 d", "2 d", "5 d"):
            assert k in parsed.cells
        for entry in found.summary:
            assert f"{entry['mean_pr_auc']:.4f}" in parsed.cells
        # the policies' two plots, and the staleness plot
        assert parsed.tags.count("svg") == (3 if with_policies else 1)
        assert ("Scoreboard" in html) == bool(with_policies)
