"""Batch scoring into gold.predictions, its suite, and lineage: a real SparkSession, real
Delta tables and a real MLflow store (SQLite in the module's directory).

silver.features days are simulated straight into the table (the contract's own columns,
which are what the test models are trained on); the feature pipeline has its own tests.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from regrow.catalog import (
    CHALLENGER,
    CHAMPION,
    EVENT_DATE,
    FEATURES,
    MODEL_VERSIONS,
    PREDICTIONS,
    RUN_ID,
    SHADOW,
    SOURCE_VERSION,
    VALIDATION,
)
from regrow.cli import app
from regrow.data.simulate import TRUTH_LABEL, TRUTH_LABEL_TIME, simulate_day
from regrow.model.challenger import train_challenger
from regrow.model.lineage import lineage
from regrow.model.registry import Registry
from regrow.model.retrain import train_and_gate
from regrow.model.scoring import ScoringError, load_scorers, score_day, score_frame
from regrow.settings import load_settings
from regrow.storage.lakehouse import MissingPartitionError
from regrow.validation import ValidationError, validate_day
from tests.conftest import context_of, lakehouse_of, write_params
from tests.snapshots import write_snapshot

STABLE = {"scenario": "stable"}
SCORED = 16  # simulated day index scored by the tests (the models train on days 0..15)


def simulated_features(settings, index: int) -> pa.Table:
    """A silver.features day: the contract's columns of simulated day ``index``."""
    frame = simulate_day(settings.dataset, settings.simulator, index).drop(
        columns=[TRUTH_LABEL, TRUTH_LABEL_TIME]
    )
    frame[EVENT_DATE] = frame[settings.dataset.event_timestamp].dt.date
    frame[SOURCE_VERSION] = 0
    frame[RUN_ID] = "simulated"
    return pa.Table.from_pandas(frame, preserve_index=False)


def write_features(settings, index: int) -> tuple[dt.date, pa.Table]:
    rows = simulated_features(settings, index)
    lakehouse_of(settings).append_records(FEATURES, rows, partition_by=[EVENT_DATE])
    return rows[EVENT_DATE][0].as_py(), rows


def day_rows(settings, day: dt.date, table: str = PREDICTIONS) -> list[dict]:
    rows = lakehouse_of(settings).to_arrow(table, partitions={EVENT_DATE: day}).to_pylist()
    return sorted(rows, key=lambda r: (r["model_alias"], r["transaction_id"]))


@pytest.fixture(scope="module")
def world(tmp_path_factory, mlflow_template, spark, engine):
    """A champion (v1, stateless on days 0..13) and a day of features to score."""
    root = tmp_path_factory.mktemp("scoring")
    shutil.copyfile(mlflow_template, root / "mlflow.db")
    settings = load_settings(write_params(root, simulator=STABLE, lakehouse={"engine": engine}))
    snapshot = write_snapshot(settings, root / "trainset-1", (0, 13))
    outcome = train_and_gate(context_of(settings), snapshot, "test", None).outcome
    assert outcome.promoted, outcome
    day, features = write_features(settings, SCORED)
    return settings, root, day, features


def test_champion_scores_each_event_once_and_rescoring_gives_the_same_rows(world, spark):
    settings, _, day, features = world
    registry = Registry(settings)
    champion = registry.alias(CHAMPION)
    lakehouse = lakehouse_of(settings)

    report = score_day(context_of(settings, spark, "run-a", lakehouse), day)
    rows = day_rows(settings, day)

    assert report.models == {CHAMPION: "1"} and report.events == features.num_rows
    assert len(rows) == features.num_rows  # no challenger yet: no shadow rows
    assert {r["transaction_id"] for r in rows} == set(features["transaction_id"].to_pylist())
    # The scores are the registered model's own predictions, through its own transform.
    expected = registry.load(champion.version).predict(features.to_pandas())
    by_id = dict(zip(features["transaction_id"].to_pylist(), expected, strict=True))
    assert max(abs(r["score"] - by_id[r["transaction_id"]]) for r in rows) < 1e-6
    threshold = settings.score.threshold
    assert all(r["decision"] == (r["score"] >= threshold) for r in rows)
    assert 0 < report.flagged == sum(r["decision"] for r in rows) < len(rows)
    one = rows[0]
    assert (one["model_name"], one["model_version"], one["model_alias"], one["model_run_id"]) == (
        registry.name, 1, CHAMPION, champion.run_id,
    )  # fmt: skip
    assert one[SOURCE_VERSION] == lakehouse.table_version(FEATURES)
    assert one[RUN_ID] == "run-a" and one["threshold"] == threshold

    # The suite ran on the written partition and passed.
    results = lakehouse.sql(
        f"SELECT expectation_type, success FROM gold.validation WHERE \"table\" = '{PREDICTIONS}'"
    ).to_pylist()
    assert results and all(r["success"] for r in results)
    # The model's lineage was copied for `regrow lineage`.
    recorded = lakehouse.to_arrow(MODEL_VERSIONS).to_pylist()
    assert [(r["model_version"], r["dvc_md5"]) for r in recorded] == [(1, champion.tags["dvc_md5"])]

    version = lakehouse.table_version(PREDICTIONS)
    again = score_day(context_of(settings, spark, "run-a", lakehouse), day)
    assert again.version == version + 1  # a new commit that replaced the partition...
    assert day_rows(settings, day) == rows  # ...with the same rows, not twice as many
    assert len(lakehouse.to_arrow(MODEL_VERSIONS)) == 1  # lineage recorded once


def test_challenger_scores_in_shadow_without_touching_champion_decisions(world, spark):
    settings, root, day, features = world
    lakehouse = lakehouse_of(settings)
    score_day(context_of(settings, spark, "before", lakehouse), day)
    champion_only = [{**r, RUN_ID: None} for r in day_rows(settings, day)]

    # A warm start from the champion on the two newer days, registered as challenger.
    snapshot = write_snapshot(settings, root / "trainset-2", (0, 15))
    facts = train_challenger(context_of(settings), snapshot, trigger="test", mode="warm_start")
    assert facts.training["mode"] == "warm_start" and facts.version == "2"
    assert Registry(settings).alias(CHALLENGER).version == "2"

    report = score_day(context_of(settings, spark, "after", lakehouse), day)
    rows = day_rows(settings, day)
    champion = [{**r, RUN_ID: None} for r in rows if r["model_alias"] == CHAMPION]
    shadow = [r for r in rows if r["model_alias"] == SHADOW]

    assert report.models == {CHAMPION: "1", SHADOW: "2"}
    assert champion == champion_only  # same scores and decisions as without a challenger
    assert sorted(r["transaction_id"] for r in shadow) == sorted(
        features["transaction_id"].to_pylist()
    )
    assert {r["model_version"] for r in shadow} == {2}
    assert any(
        s["score"] != c["score"] for s, c in zip(shadow, champion, strict=True)
    )  # a different model

    # The DataFrame form gives the same rows (decoded: Spark's JVM cannot read dictionaries).
    lakehouse_features = lakehouse.read(spark, FEATURES, partitions={EVENT_DATE: day})
    frame = score_frame(
        lakehouse_features, load_scorers(Registry(settings)), settings.dataset, settings.score,
        rows[0][SOURCE_VERSION], "after",
    )  # fmt: skip
    columns = ["model_alias", "transaction_id", "score", "model_run_id", RUN_ID]
    assert sorted(tuple(r[c] for c in columns) for r in frame.collect()) == sorted(
        tuple(r[c] for c in columns) for r in rows
    )

    # Lineage: the shadow model's chain goes back to its parent, the champion.
    entity = features["card_id"][0].as_py()
    found = lineage(lakehouse, settings.dataset, entity, day)
    assert {p["model_alias"] for p in found.predictions} == {CHAMPION, SHADOW}
    chain = found.chain(Registry(settings).name, 2)
    assert [m["model_version"] for m in chain] == [2, 1]
    assert chain[0]["mode"] == "warm_start" and chain[0]["parent_version"] == "1"
    assert all(m["dvc_md5"] and m["git_commit"] and m["trainset_sha256"] for m in chain)


def test_cli_reads_predictions_queries_them_and_traces_lineage(world, spark):
    settings, root, day, _ = world
    score_day(context_of(settings, spark, "cli", lakehouse_of(settings)), day)
    params = str(root / "params.yaml")
    runner = CliRunner()

    top = runner.invoke(
        app, ["predictions", "--date", str(day), "--top", "3", "--format", "json",
              "--params", params],
    )  # fmt: skip
    assert top.exit_code == 0, top.output
    listed = [json.loads(line) for line in top.output.splitlines() if line.startswith("{")]
    assert len(listed) == 3 and all(r["model_alias"] == CHAMPION for r in listed)
    scores = [r["score"] for r in listed]
    assert scores == sorted(scores, reverse=True)
    best = max(r["score"] for r in day_rows(settings, day) if r["model_alias"] == CHAMPION)
    assert scores[0] == pytest.approx(best)

    counted = runner.invoke(
        app, ["query", f"SELECT model_alias, count(*) AS n FROM gold.predictions WHERE "
              f"event_date = DATE '{day}' GROUP BY 1 ORDER BY 1", "--format", "csv",
              "--params", params],
    )  # fmt: skip
    assert counted.exit_code == 0, counted.output
    assert "champion,2000" in counted.output

    traced = runner.invoke(
        app, ["lineage", "--entity", listed[0]["card_id"], "--date", str(day), "--params", params]
    )
    assert traced.exit_code == 0, traced.output
    assert listed[0]["transaction_id"] in traced.output
    champion = Registry(settings).alias(CHAMPION)
    assert f"dvc md5 {champion.tags['dvc_md5']}" in traced.output
    assert f"git {champion.tags['git_commit']}" in traced.output

    unknown = runner.invoke(
        app, ["lineage", "--entity", "nobody", "--date", str(day), "--params", params]
    )
    assert unknown.exit_code == 1 and "card_id='nobody' has no prediction" in unknown.output


def test_missing_day_and_changed_schema_stop_with_their_names(world, spark, tmp_path):
    settings, root, day, features = world
    lakehouse = lakehouse_of(settings)
    missing = day + dt.timedelta(days=5)
    with pytest.raises(MissingPartitionError, match=f"silver.features has no partition "
                       f"event_date={missing}"):  # fmt: skip
        score_day(context_of(settings, spark, "run", lakehouse), missing)

    # Same registry, another lakehouse whose features lost one column and retyped another.
    other = load_settings(
        write_params(tmp_path, simulator=STABLE,
                     mlflow={"tracking_uri": f"sqlite:///{root / 'mlflow.db'}"})
    )  # fmt: skip
    changed = features.drop_columns(["merchant_risk"]).set_column(
        features.schema.get_field_index("amount"), "amount",
        pa.array([str(v) for v in features["amount"].to_pylist()]),
    )  # fmt: skip
    lakehouse_of(other).append_records(FEATURES, changed, partition_by=[EVENT_DATE])
    with pytest.raises(ScoringError) as err:
        score_day(context_of(other, spark, "run", lakehouse_of(other)), day)
    message = str(err.value)
    assert "missing columns ['merchant_risk']" in message
    assert "amount is string" in message
    assert f"event_date={day}" in message
    assert not lakehouse_of(other).exists(PREDICTIONS)  # nothing written


def test_no_champion_is_a_clear_error(make_settings, mlflow_db, spark):
    settings = make_settings(simulator=STABLE)
    day, _ = write_features(settings, 0)
    with pytest.raises(ScoringError, match=r"has no champion: nothing to score with"):
        score_day(context_of(settings, spark, "run", lakehouse_of(settings)), day)
    result = CliRunner().invoke(
        app, ["score", "--date", str(day), "--params", str(Path(settings.base_dir) / "params.yaml")]
    )
    assert result.exit_code == 1 and "has no champion" in result.output
    assert not lakehouse_of(settings).exists(PREDICTIONS)


def test_predictions_suite_blocks_out_of_range_scores_and_duplicate_champions(world, spark):
    settings, _, _, _ = world
    lakehouse = lakehouse_of(settings)
    day, features = write_features(settings, SCORED + 1)
    good = {
        "score": 0.2, "decision": False, "threshold": 0.5, "model_name": "m",
        "model_version": 1, "model_alias": CHAMPION, "model_run_id": "r",
        EVENT_DATE: day, SOURCE_VERSION: 0, RUN_ID: "hand-made",
    }  # fmt: skip
    keys = features.select(["transaction_id", "card_id", "event_time"]).to_pylist()
    rows = [{**k, **good} for k in keys]
    rows[0]["score"] = 1.5  # not a probability
    rows[1] = {**rows[2]}  # event 2 scored twice by the champion, event 1 not at all
    rows = rows[:-1]  # and the last event not scored: one champion row short
    schema = lakehouse.to_arrow(PREDICTIONS).schema
    lakehouse.append_records(PREDICTIONS, pa.Table.from_pylist(rows, schema), [EVENT_DATE])

    with pytest.raises(ValidationError) as err:
        validate_day(context_of(settings, spark, "check", lakehouse), day, tables=[PREDICTIONS])
    failed = {o.expectation_type for o in err.value.outcome.critical_failures}
    assert failed == {
        "expect_column_values_to_be_between",
        "expect_compound_columns_to_be_unique",
        "expect_table_row_count_to_equal",
    }
    recorded = lakehouse.sql(
        f"SELECT expectation_type FROM {VALIDATION} WHERE day = DATE '{day}' AND NOT success"
    ).to_pylist()
    assert {r["expectation_type"] for r in recorded} == failed
