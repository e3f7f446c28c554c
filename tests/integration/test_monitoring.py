"""The daily loop on real tables: drift and performance into gold.monitoring, the policy's
decision into gold.decisions, the report — a real SparkSession, real Delta tables, a real
MLflow store (SQLite in the module's directory).

The world: 20 simulated days of the covariate-shift scenario (the amount grows by half and
online purchases double from day 16), landed in bronze, silver built by the library; a
champion trained on the cut-off of day 14 (its training window is the reference); days
14..19 scored, then monitored and decided oldest first. The feature windows are 1h and 24h
so that one day of history is enough for complete windowed features.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from regrow.catalog import (
    CHAMPION,
    DECISIONS,
    EVENT_DATE,
    FEATURES,
    LABEL_STATUS,
    MODEL_ALIAS,
    MONITORING,
    PREDICTIONS,
)
from regrow.cli import app
from regrow.data.trainset import build_trainset, load_matured
from regrow.model.decisions import NONE, RETRAIN_ACTIONS
from regrow.model.retrain import train_and_gate
from regrow.model.scoring import score_day
from regrow.monitoring.monitor import MonitorError, monitor_day, read_monitoring, report_day
from regrow.monitoring.results import (
    DRIFT,
    ESTIMATED,
    FLAGGED,
    INSUFFICIENT,
    LABEL_DRIFT,
    NULL_RATE,
    PREDICTION_DRIFT,
    REALISED,
    UNSEEN,
)
from regrow.orchestration.airflow_local import airflow_env, dags_test, ensure_db, task_states
from regrow.policy.daily import PolicyError, decide_day
from regrow.settings import load_settings
from regrow.storage.session import interpreted
from tests.bronze_rows import build_silver_days, land_simulated
from tests.conftest import connect_env, context_of, lakehouse_of, write_params

# Minutes of Spark and an `airflow dags test`: started first (see pytest_collection_modifyitems).
pytestmark = pytest.mark.slow

START, DAYS, ONSET, CUTOFF = dt.date(2026, 1, 1), 20, 16, 14
SCORED = [START + dt.timedelta(days=i) for i in range(CUTOFF, DAYS)]
SECTIONS = {
    "dataset": {"label_delay_days": 3},
    "simulator": {"start_date": START, "days": DAYS, "events_per_day": 600,
                  "n_entities": 800, "mean_label_delay_days": 1.0,
                  "scenario": "covariate_shift", "drift_onset_day": ONSET},
    "features": {"windows": ["1h", "24h"]},
    "spark": {"shuffle_partitions": 2},
    "train": {"nthread": 1},
    "monitor": {"min_rows": 300, "performance": {"bootstrap": 50, "min_positives": 5}},
    # Drift on one day is enough here (the N-of-M rule has its own tests).
    "policy": {"triggers": {"drift": {"n": 1, "m": 1}, "age": {"enabled": False},
                            "volume": {"enabled": False}}},
}  # fmt: skip


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory, mlflow_template):
    import shutil

    root = tmp_path_factory.mktemp("monitoring")
    shutil.copyfile(mlflow_template, root / "mlflow.db")
    settings = load_settings(write_params(root, **SECTIONS))
    lakehouse = lakehouse_of(settings)
    land_simulated(spark, lakehouse, settings, DAYS)
    ctx = context_of(settings, spark, "test-world", lakehouse)
    # Small days, interpreted: as regrow's own day loops run them (spark.interpreted_below_mib).
    with interpreted(spark, settings.spark):
        build_silver_days(ctx, [START + dt.timedelta(days=i) for i in range(DAYS)])
    build_trainset(ctx, START + dt.timedelta(days=CUTOFF))
    assert train_and_gate(ctx, trigger="test", mode="stateless").outcome.promoted
    for day in SCORED:
        score_day(ctx, day)
    decisions = {}
    for day in SCORED:
        monitor_day(context_of(settings, spark, f"monitor-{day}", lakehouse), day)
        decisions[day] = decide_day(context_of(settings, spark, f"decide-{day}", lakehouse), day)
    return settings, lakehouse, decisions


def rows_of(lakehouse, day, check=None):
    rows = lakehouse.to_arrow(MONITORING).to_pylist()
    return [r for r in rows if r["monitor_date"] == day and (check is None or r["check"] == check)]


def test_every_feature_and_the_score_are_checked_against_the_champions_window(world):
    settings, lakehouse, _ = world
    day = SCORED[0]
    rows = rows_of(lakehouse, day)
    drifts = {r["column"] for r in rows if r["check"] == DRIFT}
    assert set(settings.dataset.features) <= drifts
    assert {"prior_events_24h", "amount_prior_sum_1h"} <= drifts  # derived features too
    assert {r["column"] for r in rows if r["check"] == UNSEEN} == set(
        settings.dataset.categorical_features
    )
    assert [r["column"] for r in rows if r["check"] == PREDICTION_DRIFT] == ["score"]
    champion_window = {r["reference_window"] for r in rows if r["check"] == DRIFT}
    assert len(champion_window) == 1
    first, last = champion_window.pop().split("..")
    assert START <= dt.date.fromisoformat(first) < dt.date.fromisoformat(last)
    assert dt.date.fromisoformat(last) < START + dt.timedelta(days=CUTOFF)
    # The windowed features leave out the first day of history (its 24h windows are
    # incomplete); the contract's features use the whole training window.
    windowed = {json.loads(r["detail"]).get("reference_days") for r in rows
                if r["check"] == DRIFT and r["column"] == "prior_events_24h"}  # fmt: skip
    if first == str(START):
        assert windowed == {f"{START + dt.timedelta(days=1)}..{last}"}
    assert all(r["n_reference"] >= 300 and r["n_current"] == 600 for r in rows
               if r["check"] == DRIFT and r["kind"] != "label")  # fmt: skip
    assert all(r["p_adjusted"] is not None for r in rows if r["check"] == DRIFT)


def test_the_stable_days_are_quiet_and_the_shift_is_flagged_at_onset(world):
    _, lakehouse, decisions = world
    for day in SCORED:
        flagged = {r["column"] for r in rows_of(lakehouse, day) if r["status"] == FLAGGED
                   and r["check"] in (DRIFT, NULL_RATE, UNSEEN, PREDICTION_DRIFT)}  # fmt: skip
        if day < START + dt.timedelta(days=ONSET):
            assert not flagged, (day, flagged)
            assert decisions[day].action == NONE
        else:
            # the amount grows by half, online purchases double
            assert {"amount", "channel"} & flagged, (day, flagged)
    onset = START + dt.timedelta(days=ONSET)
    assert decisions[onset].action in RETRAIN_ACTIONS
    assert decisions[onset].trigger.startswith("drift")
    assert "feature(s) flagged" in decisions[onset].reason


def test_the_cooldown_and_budget_hold_the_next_days_back(world):
    _, lakehouse, decisions = world
    onset = START + dt.timedelta(days=ONSET)
    rows = [
        r for r in lakehouse.to_arrow(DECISIONS).to_pylist() if r["trigger"].startswith("policy")
    ]
    assert sorted(r["decision_date"] for r in rows) == SCORED  # exactly one row per day
    after = [decisions[onset + dt.timedelta(days=k)] for k in (1, 2, 3)]
    assert all(d.action == NONE and "cooldown" in d.reason for d in after)
    checks = json.loads(next(r for r in rows if r["decision_date"] == onset)["checks"])
    drift = next(c for c in checks if c["name"] == "drift")
    assert drift["fired"] and drift["numbers"]["flagged_features"]
    assert decisions[onset].budget_left == 1


def test_the_age_counts_from_the_last_retrain_request(world, spark):
    """The onset's drift asked for a retrain, trained on everything known the next day. On
    the last day the champion is 5 days past its own cut-off but 2 past that request's: an
    age limit of 3 days does not fire again."""
    settings, lakehouse, decisions = world
    day, onset = SCORED[-1], START + dt.timedelta(days=ONSET)
    assert decisions[onset].action in RETRAIN_ACTIONS
    triggers = settings.policy.triggers
    age = triggers.age.model_copy(update={"enabled": True, "max_days": 3})
    policy = settings.policy.model_copy(
        update={"triggers": triggers.model_copy(update={"age": age})}
    )
    strict = settings.model_copy(update={"policy": policy})
    try:
        decide_day(context_of(strict, spark, "strict", lakehouse), day)
        row = next(r for r in lakehouse.to_arrow(DECISIONS).to_pylist()
                   if r["decision_date"] == day and r["trigger"].startswith("policy"))  # fmt: skip
        found = next(c for c in json.loads(row["checks"]) if c["name"] == "age")
        assert found["numbers"]["champion_cutoff"] == str(START + dt.timedelta(days=CUTOFF))
        assert found["numbers"]["since"] == str(onset + dt.timedelta(days=1))
        assert found["numbers"]["age_days"] == 2 and not found["fired"]
    finally:  # the world's decision of the day, as the other tests expect it
        decide_day(context_of(settings, spark, "restore", lakehouse), day)


def test_performance_is_estimated_on_the_day_and_realised_on_the_matured_day(world):
    settings, lakehouse, _ = world
    day = SCORED[-1]
    estimated = {r["column"]: r for r in rows_of(lakehouse, day, ESTIMATED)}
    realised = {r["column"]: r for r in rows_of(lakehouse, day, REALISED)}
    assert set(estimated) == {"pr_auc", "roc_auc", "log_loss"}
    assert set(realised) == {"pr_auc", "roc_auc", "log_loss", "ece"}
    matured = day - dt.timedelta(days=settings.dataset.label_delay_days)
    assert {r["data_date"] for r in realised.values()} == {matured}
    assert {r["data_date"] for r in estimated.values()} == {day}
    for r in (estimated["roc_auc"], realised["roc_auc"]):
        assert r["status"] == "ok" and 0.5 < r["value"] <= 1
        assert r["ci_low"] <= r["value"] <= r["ci_high"]
    label = rows_of(lakehouse, day, LABEL_DRIFT)[0]
    assert label["data_date"] == matured and 0 < label["value"] < 0.2
    # The policy weighs the realised figure with its interval (a drop inside it is noise).
    metric = realised[settings.evaluate.primary_metric]
    assert metric["status"] == "ok"
    row = next(r for r in lakehouse.to_arrow(DECISIONS).to_pylist()
               if r["decision_date"] == day and r["trigger"].startswith("policy"))  # fmt: skip
    found = next(c for c in json.loads(row["checks"]) if c["name"] == "performance")
    assert found["numbers"]["source"] == "realised"
    assert found["numbers"]["metric"] == metric["value"]
    assert found["numbers"]["interval"] == [metric["ci_low"], metric["ci_high"]]


def test_the_replay_reads_the_tables_as_the_daily_loop_does(world, spark):
    """``regrow replay`` monitors and trains from memory (regrow.replay): on the same
    tables it must find the same training candidates with the same labels at a cut-off,
    and the same verdict of every drift check on each scored day, as the daily loop."""
    from regrow.replay.engine import Champion, Monitor
    from regrow.replay.history import load_history

    settings, lakehouse, _ = world
    dataset = settings.dataset
    history = load_history(settings, lakehouse, [START + dt.timedelta(days=i) for i in range(DAYS)])
    columns = [dataset.event_id, dataset.label, dataset.label_timestamp, LABEL_STATUS]
    for cutoff in (START + dt.timedelta(days=CUTOFF), START + dt.timedelta(days=DAYS)):
        expected, _ = load_matured(spark, settings, lakehouse, cutoff)
        found = history.matured(cutoff)
        assert len(found) == len(expected) > 0
        a = expected[columns].sort_values(dataset.event_id, ignore_index=True)
        b = found[columns].sort_values(dataset.event_id, ignore_index=True)
        assert a[dataset.event_id].tolist() == b[dataset.event_id].tolist()
        assert a[dataset.label].astype(int).tolist() == b[dataset.label].astype(int).tolist()
        assert a[LABEL_STATUS].tolist() == b[LABEL_STATUS].tolist()
        assert (a[dataset.label_timestamp] == b[dataset.label_timestamp]).all()

    ctx = context_of(settings, spark, "replay-check", lakehouse)
    version = ctx.registry.alias(CHAMPION)
    window = tuple(dt.date.fromisoformat(t[:10]) for t in version.tags["train_window"].split(".."))
    champion = Champion(ctx.registry.load(version.version), 1, START, window,
                        dt.datetime.now(dt.UTC), None)  # fmt: skip
    monitor = Monitor(history)
    checks = (DRIFT, NULL_RATE, UNSEEN, PREDICTION_DRIFT, LABEL_DRIFT)
    for day in SCORED:
        scored = lakehouse.to_arrow(PREDICTIONS, partitions={EVENT_DATE: day}).to_pylist()
        scores = [r["score"] for r in scored if r[MODEL_ALIAS] == CHAMPION]
        mine = {(r.check, r.column): r.status for r in monitor.drift(champion, day, scores)}
        theirs = {(r["check"], r["column"]): r["status"] for r in rows_of(lakehouse, day)
                  if r["check"] in checks}  # fmt: skip
        assert mine == theirs, day


def test_a_rerun_gives_the_same_rows_and_decision(world, spark):
    settings, lakehouse, decisions = world
    day = SCORED[2]

    def snapshot():
        rows = rows_of(lakehouse, day)
        # every column but the run that wrote the row
        return sorted((tuple((k, v) for k, v in r.items() if k != "run_id") for r in rows), key=str)

    before = snapshot()
    monitor_day(context_of(settings, spark, "rerun", lakehouse), day)
    again = decide_day(context_of(settings, spark, "rerun", lakehouse), day)
    assert snapshot() == before
    assert (again.action, again.reason, again.decision_id) == (
        decisions[day].action, decisions[day].reason, decisions[day].decision_id,
    )  # fmt: skip
    per_day = [r for r in lakehouse.to_arrow(DECISIONS).to_pylist()
               if r["decision_date"] == day and r["trigger"].startswith("policy")]  # fmt: skip
    assert len(per_day) == 1


def test_a_day_without_rows_is_insufficient_data_not_an_alarm(world, spark):
    settings, lakehouse, _ = world
    empty = START + dt.timedelta(days=DAYS + 5)  # no events landed that day
    monitor_day(context_of(settings, spark, "empty", lakehouse), empty)
    rows = rows_of(lakehouse, empty)
    assert rows and not [r for r in rows if r["status"] == FLAGGED]
    drifts = [r for r in rows if r["check"] in (DRIFT, PREDICTION_DRIFT)]
    assert all(r["status"] == INSUFFICIENT for r in drifts)
    assert "current window has 0 rows" in json.loads(drifts[0]["detail"])["reason"]
    perf = [r for r in rows if r["check"] in (ESTIMATED, REALISED)]
    assert perf and all(r["status"] == INSUFFICIENT for r in perf)
    decision = decide_day(context_of(settings, spark, "empty", lakehouse), empty)
    assert decision.action == NONE


def test_an_entirely_null_feature_and_a_new_category(world, spark, tmp_path):
    """A day where merchant_risk never arrived and a third of the countries are new."""
    settings, lakehouse, _ = world
    day = SCORED[1]
    features = lakehouse.read(spark, FEATURES, partitions={EVENT_DATE: day})
    country = settings.dataset.categorical_features[-1]
    from pyspark.sql import functions as F

    broken = features.withColumn("merchant_risk", F.lit(None).cast("double")).withColumn(
        country, F.when(F.rand(7) < 0.3, F.lit("Atlantis")).otherwise(F.col(country))
    )
    other = load_settings(write_params(tmp_path, **SECTIONS))
    other_lake = lakehouse_of(other)
    other_lake.write(lakehouse.read(spark, FEATURES), FEATURES, "overwrite", [EVENT_DATE])
    other_lake.write(broken, FEATURES, "overwrite", [EVENT_DATE], partition={EVENT_DATE: day})
    for table in ("gold.predictions", "silver.labels"):
        other_lake.write(lakehouse.read(spark, table), table, "overwrite",
                         lakehouse.partition_by(table))  # fmt: skip
    import shutil

    shutil.copyfile(settings.resolve("mlflow.db"), tmp_path / "mlflow.db")
    ctx = context_of(other, spark, "broken", other_lake)
    report = monitor_day(ctx, day)
    by = {(r.check, r.column): r for r in report.drift.results}
    assert by[(DRIFT, "merchant_risk")].status == INSUFFICIENT
    assert "entirely null" in by[(DRIFT, "merchant_risk")].detail["reason"]
    assert by[(NULL_RATE, "merchant_risk")].status == FLAGGED
    assert by[(UNSEEN, country)].status == FLAGGED
    assert "Atlantis" in json.dumps(by[(UNSEEN, country)].detail)


def test_a_champion_without_lineage_is_recorded_as_insufficient(world, spark):
    settings, lakehouse, _ = world
    ctx = context_of(settings, spark, "no-lineage", lakehouse)
    registry = ctx.registry
    champion = registry.alias(CHAMPION)
    window = champion.tags["train_window"]
    registry.client.delete_model_version_tag(registry.name, champion.version, "train_window")
    try:
        report = monitor_day(ctx, SCORED[0])
    finally:
        registry.tag_version(champion.version, {"train_window": window})
    drifts = [r for r in report.drift.results if r.check == DRIFT]
    assert drifts and all(r.status == INSUFFICIENT for r in drifts)
    assert "no training window in its lineage" in drifts[0].detail["reason"]
    monitor_day(ctx, SCORED[0])  # restore the day's rows for the other tests


def test_a_day_with_features_but_no_scores_names_the_fix(world, spark):
    settings, lakehouse, _ = world
    unscored = START + dt.timedelta(days=CUTOFF - 1)
    with pytest.raises(MonitorError, match=f"score it first \\(regrow score --date {unscored}\\)"):
        monitor_day(context_of(settings, spark, "unscored", lakehouse), unscored)
    with pytest.raises(PolicyError, match="monitor it first"):
        decide_day(context_of(settings, spark, "unscored", lakehouse), unscored)


def test_the_report_and_the_cli(world, spark):
    settings, lakehouse, _ = world
    onset = START + dt.timedelta(days=ONSET)
    path = report_day(context_of(settings, spark, "report", lakehouse), onset, log_to_mlflow=False)
    html = path.read_text(encoding="utf-8")
    assert "amount" in html and "<svg" in html
    series = (path.parent / "performance.csv").read_text().splitlines()
    assert series[0] == "data_date,estimated,realised" and len(series) > 3
    params = settings.resolve("params.yaml")
    result = CliRunner().invoke(app, ["monitor", "--date", "2026-01-13", "--params", params])
    assert result.exit_code == 1 and "score it first" in result.output
    assert "Traceback" not in result.output
    monitored = read_monitoring(context_of(settings, spark, "read", lakehouse))
    assert pc.max(monitored["monitor_date"]).as_py() >= SCORED[-1]


def test_the_monitor_dag_runs_the_loop_and_publishes_the_request(world, tmp_path, spark_connect):
    """regrow_monitor under real Airflow (``airflow dags test``, SQLite): both Spark steps
    on a Spark Connect server, the decision forced to a full retrain by the run's params, the
    Asset retrain.requested published with the mode and reason in its extra."""
    settings, lakehouse, _ = world
    params = Path(settings.resolve("params.yaml"))
    env = airflow_env(tmp_path / "airflow_home", params=params, extra=connect_env(spark_connect))
    ensure_db(env)
    day = SCORED[-1]
    conf = {"dates": [str(day)], "force_decision": "retrain_full"}
    result = dags_test("regrow_monitor", day, env, conf=conf)
    assert result.returncode == 0, result.stdout[-4000:]
    states = task_states("regrow_monitor", day, env)
    assert set(states.values()) == {"success"}, states
    assert set(states) == {"select_days", "compute_drift", "compute_performance", "decide",
                           "request_retrain", "report"}  # fmt: skip
    db = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        name, extra = conn.execute(
            "SELECT a.name, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE e.source_task_id = 'request_retrain' ORDER BY e.id DESC"
        ).fetchone()
    request = json.loads(extra)
    assert name == "retrain.requested"
    assert request["mode"] == "stateless" and request["day"] == str(day)
    assert "force_decision=retrain_full" in request["reason"]
    row = next(r for r in lakehouse.to_arrow(DECISIONS).to_pylist()
               if r["decision_date"] == day and r["action"] in RETRAIN_ACTIONS)  # fmt: skip
    assert row["forced"] and row["actor"] == "airflow:regrow_monitor"
    assert Path(
        settings.resolve(settings.reports_dir), "monitoring", f"monitoring-{day}.html"
    ).is_file()
