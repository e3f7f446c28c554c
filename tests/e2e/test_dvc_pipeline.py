"""`dvc repro` of dvc.yaml in a temporary copy of the repository, as a user runs it.

The copy is a fresh git repository holding what a clone needs for the pipeline; its
params.yaml is shrunk to a few small days. The stages run this environment's `regrow`
(real Spark and Delta) on the session's Spark Connect server (SPARK_REMOTE, as after
`make spark-start`: a JVM per stage cost more than the work), so the module takes a few
minutes: the whole chain runs once (module fixture) and each test then checks one promise
of dvc.yaml.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.dvc_repo import (
    PIPELINE_FILES,
    REPO,
    STAGES,
    UP_TO_DATE,
    commit,
    dvc,
    edit_params,
    ran,
    repro,
    run,
    skipped,
)

pytestmark = pytest.mark.slow

# 7 days: with 3-day label windows, events of the first 4 days have matured by the default
# cut-off (the day after the last), enough for a 2/1/1-day train/validation/test split.
SMALL_PARAMS = {
    "simulator": {"days": 7, "events_per_day": 100, "n_entities": 40, "mean_label_delay_days": 1.5},
    "dataset": {"label_delay_days": 3},
    "split": {"test_days": 1, "validation_days": 1, "rare_category_min_count": 2},
    # ~200 training rows with a handful of frauds: enough to train, not to promise a promotion.
    "train": {"min_rows": 50, "min_positives": 2},
}


def manifest(repo: Path) -> dict:
    return json.loads((repo / "data" / "trainset" / "manifest.json").read_text())


@dataclass
class Clone:
    path: Path
    first_repro: subprocess.CompletedProcess
    status_after_first: str  # `git status --porcelain` before the results were committed
    days: tuple[dt.date, dt.date]
    env: dict[str, str]  # what the stages run with: the Spark Connect server


@pytest.fixture(scope="module")
def clone(tmp_path_factory, spark_connect) -> Clone:
    repo = tmp_path_factory.mktemp("clone")
    listed = run(
        REPO, "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
        "--", *PIPELINE_FILES,
    ).stdout  # fmt: skip
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():  # a tracked file deleted in the work tree is skipped
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, repo / name)
    edit_params(repo, **SMALL_PARAMS)
    run(repo, "git", "init", "-q", "-b", "main")
    commit(repo, "a fresh clone")

    env = {"SPARK_REMOTE": f"sc://127.0.0.1:{spark_connect.port}"}
    first = repro(repo, env=env)
    status = run(repo, "git", "status", "--porcelain").stdout
    commit(repo, "dvc repro")
    sim = yaml.safe_load((repo / "params.yaml").read_text())["simulator"]
    start = dt.date.fromisoformat(sim["start_date"])
    days = (start, start + dt.timedelta(days=sim["days"] - 1))
    return Clone(repo, first, status, days, env)


def test_repro_runs_the_whole_chain(clone):
    stages = ran(clone.first_repro)
    assert sorted(stages) == sorted(STAGES)
    # The gate first, the snapshot last: features and labels wait for validate.
    assert stages[:3] == ["simulate", "ingest", "validate"]
    assert stages[-5:] == ["trainset", "train", "evaluate", "score", "monitor"]

    snapshot = manifest(clone.path)
    first, last = clone.days
    assert snapshot["cutoff_date"] == str(last + dt.timedelta(days=1))
    assert snapshot["window"]["start"] == str(first)
    for name in ("train", "validation", "test"):
        assert snapshot["splits"][name]["rows"] > 0, name
        assert (clone.path / "data" / "trainset" / f"{name}.parquet").is_file()
    tables = ("bronze/events", "gold/validation", "silver/features", "silver/labels",
              "gold/predictions", "gold/model_versions")  # fmt: skip
    for table in tables:
        assert (clone.path / "data" / "lakehouse" / table / "_delta_log").is_dir(), table

    lock = yaml.safe_load((clone.path / "dvc.lock").read_text())
    assert sorted(lock["stages"]) == sorted(STAGES)
    snapshot_out = {o["path"]: o for o in lock["stages"]["trainset"]["outs"]}["data/trainset"]
    assert snapshot_out["md5"].endswith(".dir")  # cached: DVC versions the snapshot
    assert (clone.path / ".dvc" / "cache" / "files" / "md5").is_dir()
    # Only what a user commits shows up: the root .gitignore covers every out, so DVC wrote
    # no data/.gitignore; dvc.lock and the metrics are new.
    assert sorted(clone.status_after_first.splitlines()) == [
        "?? dvc.lock", "?? metrics.json", "?? metrics/", "?? plots/",
    ]  # fmt: skip
    model = json.loads((clone.path / "data" / "model" / "model.json").read_text())
    assert model["version"] == "1" and model["lineage"]["trigger"] == "dvc"
    assert model["lineage"]["dvc_md5"] == snapshot_out["md5"]  # the lock's hash of the snapshot
    metrics = json.loads((clone.path / "metrics.json").read_text())
    assert metrics["challenger"]["backtest"]["rows"] == snapshot["splits"]["test"]["rows"]
    assert set(metrics["baselines"]) == {"random", "majority", "heuristic"}
    # The gate's outcome on these few rows is not the point here: score needs a champion,
    # which the first model is when it beats the baselines.
    assert "gate: PROMOTED v1" in clone.first_repro.stdout, clone.first_repro.stdout[-3000:]
    # validate's out is the summary of outcomes: every day, every bronze table, passed.
    summary = json.loads((clone.path / "metrics" / "validation.json").read_text())["days"]
    assert sorted(summary) == [str(first + dt.timedelta(days=i))
                               for i in range((last - first).days + 1)]  # fmt: skip
    assert all(t["passed"] for day in summary.values() for t in day.values())
    # score: the newest day, every event once by the champion.
    scored = re.search(
        r"^(\S+): (\d+) events scored by champion v1", clone.first_repro.stdout, re.M
    )
    assert scored and scored.group(1) == str(last), clone.first_repro.stdout[-2000:]
    # monitor: the same day against the champion's window (100 events a day are fewer than
    # monitor.min_rows: insufficient_data, not an alarm), its decision and its report.
    out = clone.first_repro.stdout
    assert re.search(rf"^{last}: \d+ drift checks, flagged: none$", out, re.M), out[-2000:]
    assert re.search(r"^  decision: none ", out, re.M), out[-2000:]
    assert (clone.path / "reports" / "monitoring" / f"monitoring-{last}.html").is_file()


def test_second_repro_reruns_nothing(clone):
    again = repro(clone.path, env=clone.env)
    assert ran(again) == []
    assert sorted(skipped(again)) == sorted(STAGES)
    assert UP_TO_DATE in again.stdout
    assert dvc(clone.path, "status").stdout.strip() == UP_TO_DATE


def test_metrics_show_the_training_set(clone):
    shown = json.loads(dvc(clone.path, "metrics", "show", "--json").stdout)
    (workspace,) = shown.values()  # keyed by revision; the workspace only here
    metrics = workspace["data"]["metrics/trainset.json"]["data"]
    splits = manifest(clone.path)["splits"]
    for name in ("train", "validation", "test"):
        assert metrics[name]["rows"] == splits[name]["rows"]
        assert metrics[name]["positives"] == splits[name]["positives"]
    assert metrics["features"] == len(manifest(clone.path)["columns"]["features"])

    table = dvc(clone.path, "metrics", "show").stdout
    header, row = table.splitlines()[:2]
    values = dict(zip(header.split(), row.split(), strict=True))
    assert values["Path"] == "metrics/trainset.json"
    assert int(values["train.rows"]) == splits["train"]["rows"]


def test_training_again_on_the_same_data_reproduces_metrics_json_exactly(clone):
    before = (clone.path / "metrics.json").read_bytes()
    plots_before = (clone.path / "plots" / "roc.json").read_bytes()
    dvc(clone.path, "repro", "--force", "--single-item", "train", env=clone.env)
    dvc(clone.path, "repro", "--force", "--single-item", "evaluate", env=clone.env)

    assert json.loads((clone.path / "data" / "model" / "model.json").read_text())["version"] == "2"
    assert (clone.path / "metrics.json").read_bytes() == before
    assert (clone.path / "plots" / "roc.json").read_bytes() == plots_before
    assert "metrics.json" not in dvc(clone.path, "metrics", "diff").stdout  # no change at all
    assert dvc(clone.path, "status").stdout.strip() == UP_TO_DATE


def test_snapshot_round_trips_through_the_default_local_remote(clone, tmp_path):
    assert dvc(clone.path, "remote", "default").stdout.strip() == "local"
    url = dvc(clone.path, "config", "--project", "remote.local.url").stdout.strip()
    assert url == str(Path.home() / ".local/share/regrow/dvc-remote")  # `~` expanded
    # This clone's remote directory, in .dvc/config.local (uncommitted), as docs/dvc.md says.
    remote = tmp_path / "remote"
    dvc(clone.path, "remote", "modify", "--local", "local", "url", str(remote))
    try:
        assert "pushed" in dvc(clone.path, "push").stdout
        assert "in sync" in dvc(clone.path, "status", "--cloud").stdout
        before = manifest(clone.path)["content_hash"]

        shutil.rmtree(clone.path / ".dvc" / "cache")
        shutil.rmtree(clone.path / "data" / "trainset")
        dvc(clone.path, "pull")  # the whole cache back, and the snapshot checked out
        assert manifest(clone.path)["content_hash"] == before
        assert dvc(clone.path, "status").stdout.strip() == UP_TO_DATE
    finally:
        dvc(clone.path, "remote", "modify", "--local", "--unset", "local", "url")


def test_push_to_an_s3_remote(clone, s3_server, s3_bucket):
    import boto3

    # As docs/dvc.md says: the endpoint in the remote's config, credentials from the
    # environment (the s3_server fixture sets AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY).
    dvc(clone.path, "remote", "add", "--local", "s3", f"{s3_bucket}/dvc")
    dvc(clone.path, "remote", "modify", "--local", "s3", "endpointurl", s3_server)
    try:
        assert "pushed" in dvc(clone.path, "push", "-r", "s3").stdout
        assert "in sync" in dvc(clone.path, "status", "--cloud", "-r", "s3").stdout
    finally:
        dvc(clone.path, "remote", "remove", "--local", "s3")
    listed = boto3.client("s3", endpoint_url=s3_server).list_objects_v2(
        Bucket=s3_bucket.removeprefix("s3://"), Prefix="dvc/files/md5/"
    )
    assert listed["KeyCount"] > 0


def test_features_params_mark_features_and_the_stages_after_it_only(clone):
    windows = yaml.safe_load((clone.path / "params.yaml").read_text())["features"]["windows"]
    edit_params(clone.path, features={"windows": ["6h", *windows]})

    # Params are declared key by key: only the stages that read `features` are stale
    # (train and evaluate follow once trainset's output changes). That the changed stages
    # rerun and the rest is skipped is what the reproducibility test above shows for
    # train; the window's columns are tested in-process (tests/integration/test_features).
    status = dvc(clone.path, "status").stdout
    assert re.findall(r"^(\w+):$", status, re.M) == ["features", "trainset"]
    assert "params.yaml" in status and "features" in status
    run(clone.path, "git", "checkout", "--", "params.yaml")
    assert dvc(clone.path, "status").stdout.strip() == UP_TO_DATE
