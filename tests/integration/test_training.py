"""Training, the registry and the promotion gate, on simulated snapshots and a real MLflow
store (SQLite in tmp_path, or a real `mlflow server` process where the test needs one)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import xgboost as xgb
from typer.testing import CliRunner

from regrow.catalog import CHALLENGER, CHAMPION
from regrow.cli import app
from regrow.model.challenger import evaluate_challenger, train_challenger
from regrow.model.promotion import decide
from regrow.model.registry import Registry, RegistryError
from regrow.model.retrain import retrain_needed, train_and_gate
from regrow.model.training import TrainingError
from regrow.model.versioning import dvc_md5
from tests.conftest import _free_port, context_of, lakehouse_of
from tests.snapshots import write_snapshot

# Every test starts from an empty, already migrated MLflow store in its tmp_path.
pytestmark = pytest.mark.usefixtures("mlflow_db")

# The simulator's default day: 2000 events, 3% fraud, concept drift from day 15.
STABLE = {"scenario": "stable"}
DRIFT = {"scenario": "concept_drift", "drift_onset_day": 15}


def decisions(settings) -> list[dict]:
    return (
        lakehouse_of(settings).sql("SELECT * FROM gold.decisions ORDER BY decided_at").to_pylist()
    )


def retrain(settings, snapshot: Path, trigger: str = "test", mode: str | None = None) -> dict:
    result = train_and_gate(context_of(settings), snapshot, trigger, mode)
    return result.challenger.as_dict() | {"outcome": result.outcome.as_dict()}


def test_first_model_beats_every_baseline_and_is_promoted_with_its_lineage(make_settings, tmp_path):
    settings = make_settings(simulator=STABLE)
    snapshot = write_snapshot(settings, tmp_path / "trainset", (0, 13))
    result = retrain(settings, snapshot)

    outcome = result["outcome"]
    assert outcome["promoted"], outcome["reason"]
    gains = {c["check"]: c["improvement"] for c in outcome["checks"] if "baseline" in c["check"]}
    assert set(gains) == {"beats baseline random", "beats baseline majority",
                          "beats baseline heuristic"}  # fmt: skip
    assert min(gains.values()) > 0.1  # PR-AUC 0.25 against 0.03 / 0.03 / 0.08
    registry = Registry(settings)
    champion = registry.alias(CHAMPION)
    assert champion.version == result["version"] == "1"
    assert registry.alias(CHALLENGER) is None  # promoted: no longer a challenger
    manifest = json.loads((snapshot / "manifest.json").read_text())
    tags = champion.tags
    assert tags["trainset_sha256"] == manifest["content_hash"]
    assert tags["dvc_md5"] == dvc_md5(snapshot) and tags["dvc_md5"].endswith(".dir")
    assert tags["cutoff_date"] == "2026-01-15"
    assert tags["train_window"].startswith("2026-01-01") and "..2026-01-10" in tags["train_window"]
    assert json.loads(tags["delta_versions"]) == manifest["tables"]
    assert len(tags["git_commit"].split("-")[0]) == 40
    assert tags["trigger"] == "test" and tags["mode"] == "stateless"
    assert "parent_version" not in tags

    row = decisions(settings)[0]
    assert (row["action"], row["model_version"], row["champion_before"]) == ("promote", "1", None)
    assert row["champion_after"] == "1" and row["primary_metric"] == "pr_auc"
    assert row["challenger_value"] == pytest.approx(outcome["checks"][0]["challenger"])

    # The MLflow run: params, metrics with baselines, plots, slices, a UBJ model, no pickle.
    run = registry.client.get_run(champion.run_id)
    assert run.data.params["max_depth"] == "4" and run.data.params["train.seed"] == "42"
    assert run.data.metrics["backtest_pr_auc"] > run.data.metrics["baseline_heuristic_pr_auc"]
    assert run.data.tags["gate.outcome"] == "promoted"
    artifacts = {a.path for a in registry.client.list_artifacts(champion.run_id, "plots")}
    assert artifacts >= {"plots/roc.png", "plots/pr.png", "plots/calibration.png",
                         "plots/feature_importance.png"}  # fmt: skip
    evaluation = Path(
        registry.client.download_artifacts(champion.run_id, "evaluation", str(tmp_path))
    )
    table = json.loads((evaluation / "slices.json").read_text())
    values = {row[table["columns"].index("value")] for row in table["data"]}
    assert values == {"online", "pos", "mobile"}  # dataset.slice_columns: channel
    import mlflow.artifacts

    local = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{registry.name}/1", dst_path=str(tmp_path / "m")
        )
    )
    files = {p.name for p in local.rglob("*") if p.is_file()}
    assert "model.ubj" in files and "transform.json" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle"))]
    assert "signature" in (local / "MLmodel").read_text()


def test_on_concept_drift_a_retrain_after_it_is_promoted_and_one_before_it_is_not(
    make_settings, tmp_path
):
    settings = make_settings(simulator=DRIFT)
    first = retrain(settings, write_snapshot(settings, tmp_path / "first", (0, 13)))
    assert first["outcome"]["promoted"]

    before = retrain(settings, write_snapshot(settings, tmp_path / "before", (1, 14)))
    assert not before["outcome"]["promoted"]
    assert "beats champion on backtest" in before["outcome"]["reason"]
    assert Registry(settings).alias(CHAMPION).version == "1"  # gate failed: untouched
    assert Registry(settings).alias(CHALLENGER).version == before["version"]
    # A refused retrain from scratch: the champion's trees still hold, and the warm-start
    # age cap (train.warm_start.max_age_days) counts from that retrain's window.
    registry = Registry(settings)
    assert registry.version(before["version"]).tags["mode"] == "stateless"
    end = dt.datetime.fromisoformat(before["train_last_event"])
    assert registry.parent(registry.version("1")).refused_full_end == end

    after = retrain(settings, write_snapshot(settings, tmp_path / "after", (15, 29)))
    assert after["outcome"]["promoted"], after["outcome"]["reason"]
    check = after["outcome"]["checks"][0]
    assert check["challenger"] > check["other"] + 0.1  # the old concept's model collapsed
    assert Registry(settings).alias(CHAMPION).version == after["version"]
    assert registry.parent(registry.version(after["version"])).refused_full_end is None
    rows = decisions(settings)
    assert [r["action"] for r in rows] == ["promote", "keep", "promote"]
    assert rows[2]["champion_before"] == "1" and rows[2]["champion_after"] == after["version"]


def test_a_warm_start_continues_the_champions_trees_on_only_the_new_rows(make_settings, tmp_path):
    settings = make_settings(simulator=STABLE, train={"warm_start": {"new_trees": 25}})
    first = retrain(settings, write_snapshot(settings, tmp_path / "first", (0, 13)))
    assert first["outcome"]["promoted"]
    later = write_snapshot(settings, tmp_path / "later", (0, 20))

    warm = train_challenger(
        context_of(settings), later, trigger="test", mode="warm_start"
    ).as_dict()

    registry = Registry(settings)
    parent, child = registry.load("1"), registry.load(warm["version"])
    k = parent.trees
    assert warm["mode"] == "warm_start" and warm["trees_from_parent"] == k
    assert 1 <= warm["trees_added"] <= 25 and child.trees == k + warm["trees_added"]
    assert child.booster.get_dump()[:k] == parent.booster.get_dump()  # the parent's trees, kept
    assert child.transform == parent.transform  # new rows go through the parent's transform
    # Only rows newer than the parent's training window: days 11..14 are after it, minus
    # the pinned rows (the first snapshot's test days 12..13), and days 15..16 (train of 0..20).
    tags = registry.version(warm["version"]).tags
    assert tags["parent_version"] == "1" and tags["warm_starts_in_a_row"] == "1"
    assert warm["train_first_event"] > registry.version("1").tags["train_last_event"]
    assert warm["train_rows"] < first["train_rows"]


def test_validation_days_that_were_pinned_still_steer_early_stopping(make_settings, tmp_path):
    """The demo's case: the next snapshot's validation days are the days pinned before."""
    settings = make_settings(simulator=STABLE)
    retrain(settings, write_snapshot(settings, tmp_path / "first", (0, 13)))  # pins days 12-13

    later = write_snapshot(settings, tmp_path / "later", (0, 15))  # validation: days 12-13
    facts = train_challenger(context_of(settings), later, mode="warm_start").as_dict()

    assert facts["validation_rows"] == facts["pinned_rows_in_validation"] == 4000
    assert facts["pinned_rows_dropped"] == {"train": 0}
    booster = Registry(settings).load(facts["version"]).booster
    assert int(booster.attr("best_iteration")) == booster.num_boosted_rounds() - 1


def test_warm_start_falls_back_to_stateless_when_a_cap_is_reached(make_settings, tmp_path):
    settings = make_settings(simulator=STABLE, train={"warm_start": {"max_trees": 5}})
    retrain(settings, write_snapshot(settings, tmp_path / "first", (0, 13)))

    later = write_snapshot(settings, tmp_path / "later", (0, 20))
    facts = train_challenger(context_of(settings), later, mode="warm_start").as_dict()

    assert facts["mode"] == "stateless" and facts["trees_from_parent"] == 0
    assert "max_trees=5" in facts["mode_reason"]
    assert "parent_version" not in Registry(settings).version(facts["version"]).tags


def test_a_model_with_a_new_feature_is_gated_without_the_older_pinned_set(make_settings, tmp_path):
    settings = make_settings(simulator=STABLE)
    retrain(settings, write_snapshot(settings, tmp_path / "first", (0, 13)))

    wider = write_snapshot(settings, tmp_path / "wider", (1, 14), extra_feature="amount_x")
    result = retrain(settings, wider)

    report = evaluate_challenger(context_of(settings), result["version"], wider).as_dict()
    pinned = report["evaluation"]["challenger"]["sets"]["pinned"]
    assert pinned["skipped"].startswith("no column(s) ['amount_x']: the set predates them")
    assert report["evaluation"]["champion"]["sets"]["pinned"]["pr_auc"] > 0  # still scored
    assert "pinned test set" not in [c["check"] for c in result["outcome"]["checks"]]
    assert "amount_x" in Registry(settings).load(result["version"]).features


def test_a_single_class_or_too_few_rows_stops_before_the_registry(make_settings, tmp_path):
    settings = make_settings(simulator=STABLE)
    snapshot = write_snapshot(settings, tmp_path / "trainset", (0, 13))
    train_path = snapshot / "train.parquet"
    import pandas as pd

    rows = pd.read_parquet(train_path)
    rows[settings.dataset.label] = 0
    rows.to_parquet(train_path, index=False)
    with pytest.raises(TrainingError, match=r"single class \(\d+ rows, all negative\)"):
        train_challenger(context_of(settings), snapshot)

    small = make_settings(simulator=STABLE, train={"min_rows": 10**6})
    with pytest.raises(TrainingError, match=r"fewer than train.min_rows=1000000"):
        train_challenger(context_of(small), write_snapshot(small, tmp_path / "ok", (0, 13)))
    assert Registry(settings).versions() == []
    assert not lakehouse_of(settings).exists("gold.decisions")


def test_retrain_needed_skips_the_champions_own_training_set_unless_forced(make_settings, tmp_path):
    settings = make_settings(simulator=STABLE)
    snapshot = write_snapshot(settings, tmp_path / "trainset", (0, 13))
    assert retrain_needed(context_of(settings), snapshot) == (True, "no champion yet")
    retrain(settings, snapshot)

    needed, reason = retrain_needed(context_of(settings), snapshot)
    assert not needed and "champion v1 was trained on this very training set" in reason
    assert retrain_needed(context_of(settings), snapshot, force=True)[0]
    assert retrain_needed(
        context_of(settings), write_snapshot(settings, tmp_path / "new", (1, 14))
    )[0]


def test_evaluating_the_champion_again_decides_nothing(make_settings, tmp_path):
    settings = make_settings(simulator=STABLE)
    snapshot = write_snapshot(settings, tmp_path / "trainset", (0, 13))
    retrain(settings, snapshot)  # v1, promoted

    ctx = context_of(settings)
    report = evaluate_challenger(ctx, "1", snapshot)  # e.g. `regrow evaluate` run twice
    outcome = decide(ctx, report)

    assert report.already_champion and report.champion_evaluation is None
    assert outcome.reason == "v1 is already the champion: nothing to decide"
    assert not outcome.promoted and len(decisions(settings)) == 1
    assert Registry(settings).alias(CHAMPION).version == "1"


def test_forced_promotion_and_rollback_are_recorded_with_who_and_why(make_settings, tmp_path):
    settings = make_settings(simulator=STABLE)
    params = str(Path(settings.base_dir) / "params.yaml")
    snapshot = write_snapshot(settings, tmp_path / "trainset", (0, 13))
    retrain(settings, snapshot)
    kept = retrain(settings, snapshot)  # the same data: not better, kept as challenger
    assert not kept["outcome"]["promoted"]
    cli = CliRunner()

    refused = cli.invoke(app, ["promote", "2", "--params", params, "--reason", "x"])
    assert refused.exit_code == 1 and "--force" in refused.output
    forced = cli.invoke(app, ["promote", "2", "--force", "--reason", "hotfix for a bad feed",
                              "--who", "alice", "--params", params])  # fmt: skip
    assert forced.exit_code == 0, forced.output
    assert Registry(settings).alias(CHAMPION).version == "2"
    back = cli.invoke(app, ["rollback", "--reason", "alerts doubled", "--params", params])
    assert back.exit_code == 0, back.output
    assert "v2 -> v1" in back.output
    assert Registry(settings).alias(CHAMPION).version == "1"
    again = cli.invoke(app, ["rollback", "--reason", "again", "--params", params])
    assert again.exit_code == 1 and "nothing to roll back to" in again.output

    rows = decisions(settings)
    assert [r["action"] for r in rows] == ["promote", "keep", "force_promote", "rollback"]
    forced_row, rollback_row = rows[2], rows[3]
    assert forced_row["forced"] and forced_row["actor"] == "alice"
    assert forced_row["reason"] == "forced: hotfix for a bad feed"
    assert (forced_row["champion_before"], forced_row["champion_after"]) == ("1", "2")
    assert (rollback_row["champion_before"], rollback_row["champion_after"]) == ("2", "1")
    assert rollback_row["reason"] == "rollback: alerts doubled" and not rollback_row["forced"]


def _wait_for(port: int, proc: subprocess.Popen, seconds: float = 180) -> None:
    """Until the server listens: a readiness wait, not a timing assertion (on a loaded
    2-core machine `mlflow server` took more than 60 s to start)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.3)
    pytest.fail("mlflow server did not start")


# MLflow 3 starts its job runner beside a server unless this is false (docs/operations.md).
JOB_EXECUTION = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def _mlflow_server(tmp_path: Path, port: int) -> subprocess.Popen:
    server_db = tmp_path / "server.db"
    if not server_db.exists():  # the migrated empty store: the server need not migrate it
        server_db.write_bytes((tmp_path / "mlflow.db").read_bytes())
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--default-artifact-root", str(tmp_path / "server-artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, JOB_EXECUTION: "false"},  # as `regrow mlflow-ui` and the compose stack
    )  # fmt: skip
    try:
        _wait_for(port, proc)
    except BaseException:
        _stop(proc)
        raise
    return proc


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and the workers it started (uvicorn, huey consumers): its whole
    process group, or they outlive the test (seen: left running after a CI run)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _group(pgid: int) -> list[str]:
    """The command lines of the live processes of process group ``pgid``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.getpgid(int(proc.name)) == pgid:
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue  # ended meanwhile
    return found


def test_the_mlflow_ui_serves_the_projects_store_without_mlflows_job_runner(
    make_settings, mlflow_db, tmp_path
):
    """`regrow mlflow-ui` (`make mlflow`) on the project's SQLite store. MLflow 3 would also
    start its job runner for GenAI jobs (a supervisor and seven huey consumers, 2 GB of
    RSS on a laptop); regrow submits none, so the UI runs without it."""
    settings = make_settings()
    registry = Registry(settings)
    registry.experiment_id()  # the project's experiment, in the store
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != JOB_EXECUTION}
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("regrow")), "mlflow-ui", "--port", str(port),
         "--params", str(tmp_path / "params.yaml")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env,
    )  # fmt: skip
    try:
        _wait_for(port, proc)
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name"
        query = urllib.parse.urlencode({"experiment_name": registry.experiment})
        with urllib.request.urlopen(f"{url}?{query}", timeout=30) as answer:
            assert json.load(answer)["experiment"]["name"] == registry.experiment
        processes = _group(proc.pid)
    finally:
        _stop(proc)
    assert any("mlflow" in p for p in processes), processes
    assert not [p for p in processes if "huey" in p or "_job_runner" in p], processes


def test_an_unreachable_registry_fails_clearly_and_leaves_the_aliases(make_settings, tmp_path):
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    settings = make_settings(
        simulator=STABLE, mlflow={"tracking_uri": uri, "http_timeout_seconds": 20}
    )
    server = _mlflow_server(tmp_path, port)
    try:
        first = retrain(settings, write_snapshot(settings, tmp_path / "first", (0, 13)))
        assert first["outcome"]["promoted"]
        later = write_snapshot(settings, tmp_path / "later", (15, 28))
        facts = train_challenger(context_of(settings), later)
        report = evaluate_challenger(context_of(settings), facts.version, later)
    finally:
        _stop(server)

    # The server is down between evaluation and gate, and before a training run.
    with pytest.raises(RegistryError, match=rf"MLflow at {uri}: reading alias champion"):
        decide(context_of(settings), report)
    started = time.monotonic()
    with pytest.raises(RegistryError, match=rf"MLflow at {uri}: connecting failed"):
        train_challenger(context_of(settings), later)
    assert time.monotonic() - started < 60  # no minutes of retries (a bound, not a benchmark)

    # What the server stored, read from its own database: nothing moved, nothing recorded.
    store = make_settings(mlflow={"tracking_uri": f"sqlite:///{tmp_path / 'server.db'}"})
    registry = Registry(store)
    assert [v.version for v in registry.versions()] == ["2", "1"]
    assert registry.alias(CHAMPION).version == "1"
    assert registry.alias(CHALLENGER).version == "2"
    assert [r["action"] for r in decisions(settings)] == ["promote"]


def test_artifacts_can_live_on_s3(make_settings, tmp_path, s3_bucket, monkeypatch):
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", __import__("os").environ["AWS_ENDPOINT_URL"])
    settings = make_settings(simulator=STABLE, mlflow={"artifact_location": f"{s3_bucket}/mlflow"})
    facts = train_challenger(
        context_of(settings), write_snapshot(settings, tmp_path / "trainset", (0, 13))
    ).as_dict()

    registry = Registry(settings)
    run = registry.client.get_run(facts["run_id"])
    assert run.info.artifact_uri.startswith(f"{s3_bucket}/mlflow/")
    model = registry.load(facts["version"])  # read back from S3
    assert model.trees == facts["trees"]
    import boto3

    bucket = s3_bucket.removeprefix("s3://")
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.endswith("model.ubj") for k in keys)
    assert isinstance(model.booster, xgb.Booster)
