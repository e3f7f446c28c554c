"""``regrow replay`` on a user's own landing, by params.yaml alone: loan applications with
other column names, a boolean, categories with symbols and no entity column (only the
application id) — a real SparkSession (the data stages as a range backfill), real Delta
tables, a real MLflow store; and a replay's bad input, refused before anything runs.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from regrow.catalog import REPLAY
from regrow.cli import app
from regrow.data.labels import newest_matured_day
from regrow.settings import load_settings
from regrow.storage.lakehouse import Lakehouse
from tests.conftest import REPO
from tests.loan_applications import CONTRACT, START, user_params, write_landing

# A range backfill of the loans' days: started first (see pytest_collection_modifyitems).
pytestmark = pytest.mark.slow

# Days: the first model's cut-off after WARMUP days (its matured events: WARMUP - DELAY - 1
# days, enough for a 2 + 2 + 3-day split), then the scored days, of which those older than
# the label window have their eventual labels by the end.
DAYS, PER_DAY, DELAY, WARMUP = 16, 300, 2, 9
SECTIONS = {
    "dataset": {"label_delay_days": DELAY},
    "split": {"window_days": 14, "test_days": 2, "validation_days": 2},
    "train": {"min_rows": 200, "min_positives": 5},
    "monitor": {"min_rows": 150, "performance": {"bootstrap": 20, "min_positives": 5}},
    "policy": {"triggers": {"drift": {"n": 1, "m": 1}}},
    "replay": {"freshness_days": [2, 0]},
}


@pytest.fixture(scope="module")
def loans(tmp_path_factory, spark, mlflow_template):
    root = tmp_path_factory.mktemp("replay-loans")
    landing = root / "my history"
    write_landing(landing, DAYS, PER_DAY, delay_days=DELAY)
    raw = user_params(REPO, landing, **SECTIONS)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    shutil.copyfile(mlflow_template, root / "mlflow.db")
    runner = CliRunner()
    args = ["replay", "--landing", str(landing), "--days", str(DAYS), "--policy", "default",
            "--policy", "never,weekly_full", "--warmup-days", str(WARMUP),
            "--params", str(root / "params.yaml")]  # fmt: skip
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    table = Lakehouse.from_settings(load_settings(root / "params.yaml")).to_arrow(REPLAY)
    # The same replay, its policies in two threads: its rows replaced, the same content.
    again = runner.invoke(app, [*args, "--workers", "2"])
    return root, landing, first, again, table


def test_the_loans_are_replayed_by_params_alone(loans):
    root, landing, first, _, table = loans
    settings = load_settings(root / "params.yaml")
    assert settings.dataset.entity_id is None and settings.dataset.event_id == CONTRACT["event_id"]
    rows = table.to_pylist()
    scored = [START + dt.timedelta(days=i) for i in range(WARMUP, DAYS)]
    assert {r["policy"] for r in rows} == {"default", "never", "weekly_full"}
    for policy in ("default", "never", "weekly_full"):
        days = sorted(r["day"] for r in rows if r["policy"] == policy)
        assert days == scored
    assert all(r["rows"] == PER_DAY for r in rows)
    matured = newest_matured_day(settings.dataset, START + dt.timedelta(days=DAYS))
    for r in rows:
        assert r["matured"] == (r["day"] <= matured)
        assert (r["pr_auc"] is not None) == r["matured"], r
    # weekly_full retrains on the 7th scored day, from scratch
    weekly = sorted((r for r in rows if r["policy"] == "weekly_full"), key=lambda r: r["day"])
    assert [r["action"] for r in weekly].count("retrain_full") == 1
    assert weekly[6]["action"] == "retrain_full" and weekly[6]["train_mode"] == "stateless"
    assert weekly[6]["train_rows"] > 0 and weekly[6]["train_cpu_seconds"] > 0
    # The data stages ran on the user's files in the replay's own lakehouse, read-only.
    workdir = root / "data" / "replay" / landing.name
    assert (workdir / "lakehouse" / "silver" / "features").is_dir()
    assert not (root / "data" / "lakehouse" / "silver").exists()
    out = first.output
    assert "mean PR-AUC" in out and "never" in out and "weekly_full" in out
    page = Path(out.split("scoreboard: ", 1)[1].strip())
    html = page.read_text(encoding="utf-8")
    assert "<svg" in html and "weekly_full" in html and "my history" in html


def test_a_rerun_replaces_its_rows_with_the_same_content(loans):
    root, _, first, again, table = loans
    assert again.exit_code == 0, again.output
    # the data stages are not run again
    assert "already built" in again.output
    now = Lakehouse.from_settings(load_settings(root / "params.yaml")).to_arrow(REPLAY)
    assert now.num_rows == table.num_rows

    def content(t) -> list[dict]:
        return sorted(
            ({k: v for k, v in r.items() if not k.endswith("seconds")} for r in t.to_pylist()),
            key=lambda r: (r["policy"], r["day"]),
        )

    assert content(now) == content(table)

    def board(output: str) -> list[list[str]]:  # the table printed, without the time columns
        lines = output.split("\npolicy ", 1)[1].split("\nreplay ", 1)[0].splitlines()
        header = ["policy", *re.split(r"\s{2,}", lines[0].strip())]
        timed = {header.index("training CPU-s"), header.index("wall s")}
        return [[c for i, c in enumerate(re.split(r"\s{2,}", line.strip())) if i not in timed]
                for line in lines[1:]]  # fmt: skip

    assert len(board(first.output)) == 3
    assert board(first.output) == board(again.output)


def test_mlflow_has_a_parent_run_and_a_child_per_policy(loans):
    root, _, first, _, table = loans
    replay_id = table.to_pylist()[0]["replay_id"]
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("regrow-loan_applications")
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.`regrow.replay_id` = '{replay_id}'"
    )
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 2  # one per run of the replay
    last = max(parents, key=lambda r: r.info.start_time)
    mine = [c for c in children if c.data.tags["mlflow.parentRunId"] == last.info.run_id]
    assert sorted(c.data.tags["regrow.policy"] for c in mine) == ["default", "never", "weekly_full"]
    weekly = next(c for c in mine if c.data.tags["regrow.policy"] == "weekly_full")
    assert weekly.data.metrics["retrains"] == 1
    assert len(client.get_metric_history(weekly.info.run_id, "daily_pr_auc")) >= 1
    assert any(a.path.endswith(".html") for a in client.list_artifacts(last.info.run_id))
    assert json.loads(json.dumps(last.data.params))["source"] == "my history"


def test_the_value_of_freshness_alone_reuses_the_days_and_records_each_staleness(loans):
    """``--freshness`` without a policy, on the days the replays above built: each day
    whose 2-day-stale model lies after the warm-up is scored by the model of its own
    cut-off and by the one 2 days older; gold.replay, the page and MLflow have both."""
    root, landing, *_ = loans
    params = root / "params.yaml"
    result = CliRunner().invoke(app, ["replay", "--landing", str(landing), "--days", str(DAYS),
                                      "--freshness", "--warmup-days", str(WARMUP),
                                      "--params", str(params)])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.output
    assert "already built" in out and "the value of freshness" in out
    assert re.search(r"^0 d\s+\d+\s+0\.\d{4}\s+0\.\d{4}\s+1\.000$", out, re.M), out
    assert re.search(r"^2 d\s+\d+\s+0\.\d{4}", out, re.M), out
    settings = load_settings(params)
    rows = Lakehouse.from_settings(settings).to_arrow(REPLAY).to_pylist()
    replay_id = re.search(r"^replay (\S+):", out, re.M).group(1)
    mine = [r for r in rows if r["replay_id"] == replay_id]
    days = [START + dt.timedelta(days=i) for i in range(WARMUP + 2, DAYS)]
    for k in (0, 2):
        series = sorted(
            (r for r in mine if r["policy"] == f"freshness_{k}d"), key=lambda r: r["day"]
        )
        assert [r["day"] for r in series] == days
        assert all(f"({k} day(s) stale)" in r["reason"] for r in series)
        assert all((r["pr_auc"] is not None) == r["matured"] for r in series)
    assert {r["policy"] for r in mine} == {"freshness_0d", "freshness_2d"}
    html = Path(out.split("scoreboard: ", 1)[1].strip()).read_text(encoding="utf-8")
    assert "The value of freshness" in html and "<svg" in html
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    parent = re.search(r"MLflow run (\w+)", out).group(1)
    history = client.get_metric_history(parent, "freshness_pr_auc")
    assert sorted(m.step for m in history) == [0, 2]
    assert client.get_run(parent).data.params["freshness_days"] == "0,2"


def test_a_landing_without_the_contracts_columns_fails_at_once(tmp_path):
    landing = tmp_path / "landing"
    write_landing(landing, 3, 20, delay_days=DELAY)
    for csv in (landing / "events").rglob("*.csv"):
        csv.write_text(csv.read_text().replace("Credit Score", "FICO"))
    raw = user_params(REPO, landing, **SECTIONS)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    result = CliRunner().invoke(app, ["replay", "--landing", str(landing), "--days", "3",
                                      "--policy", "never", "--warmup-days", "1",
                                      "--params", str(tmp_path / "params.yaml")])  # fmt: skip
    assert result.exit_code == 1
    assert "lacks the contract's column(s) 'Credit Score'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "data" / "replay").exists()  # nothing ran


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "tsunami", "--policy", "never"],
         "unknown scenario 'tsunami': choose from stable, covariate_shift"),
        (["--scenario", "stable", "--policy", "never,sometimes"],
         "unknown policy 'sometimes': choose from never, daily_full, weekly_full, drift, "
         "performance, default"),
        (["--scenario", "stable", "--policy", "never", "--warmup-days", "20"],
         "--days 20 leaves no day to replay after a warm-up of 20 day(s)"),
        (["--scenario", "stable", "--policy", "never", "--days", "3000"],
         "3000 simulated day(s) from simulator.start_date 2026-01-01 end on 2034-03-19, which "
         "is not over"),
    ],
)  # fmt: skip
def test_bad_choices_fail_at_once_with_the_valid_ones(tmp_path, args, message):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["lakehouse"]["root"] = str(tmp_path / "lakehouse")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["replay", "--days", "20", *args,
                                      "--params", str(tmp_path / "params.yaml")])  # fmt: skip
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "data").exists() and not (tmp_path / "lakehouse").exists()
