"""The whole pipeline on a user's own data, by params.yaml alone: `dvc repro` (ingest →
validate → features → labels → trainset → train → evaluate → score → monitor, each stage
the `regrow` CLI) in a temporary copy of the repository, on loan applications
(tests/loan_applications.py) that share nothing with the simulator: other column names with
spaces, a true/false column, categories with symbols, no entity column, label files with
only the id, the label and its time, and a 30-day label window. The landing lives outside
the repository, where params.yaml's landing.path points.

34 days: with 30-day windows the events of the first 4 days have matured by the default
cut-off (the day after the last): a 2/1/1-day split. The stages run on the session's Spark
Connect server (SPARK_REMOTE), as `make spark-start` lets a user do: no JVM per stage.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from regrow.catalog import EVENT_DATE, LABEL_STATUS
from regrow.data.trainset import load_trainset
from regrow.settings import load_settings
from tests.conftest import lakehouse_of
from tests.dvc_repo import PIPELINE_FILES, REPO, STAGES, UP_TO_DATE, commit, dvc, repro, run
from tests.loan_applications import CONTRACT, DELAY_DAYS, START, user_params, write_landing

pytestmark = pytest.mark.slow

DAYS, PER_DAY = 34, 150
LAST = START + dt.timedelta(days=DAYS - 1)
SECTIONS = {
    "split": {"window_days": DAYS, "test_days": 1, "validation_days": 1},
    "train": {"min_rows": 200},
}


@dataclass
class OwnData:
    repo: Path
    landing: Path
    landing_digest: str
    first_repro: object
    env: dict[str, str]


def _digest(folder: Path) -> str:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


def _copy_pipeline(repo: Path) -> None:
    """The files of a clone that `dvc repro` needs (no caches, no bytecode)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "cache", "tmp", "config.local")
    for name in PIPELINE_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=ignore)
        else:
            shutil.copy2(source, repo / name)


@pytest.fixture(scope="module")
def own_data(tmp_path_factory, spark_connect, mlflow_template) -> OwnData:
    repo = tmp_path_factory.mktemp("own-data-clone")
    landing = tmp_path_factory.mktemp("loans") / "landing"
    written = write_landing(landing, DAYS, PER_DAY)
    assert written["events"] == DAYS * PER_DAY
    _copy_pipeline(repo)
    raw = user_params(REPO, landing, **SECTIONS)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    shutil.copyfile(mlflow_template, repo / "mlflow.db")  # a migrated store: seconds saved
    env = {"SPARK_REMOTE": f"sc://127.0.0.1:{spark_connect.port}"}
    # As the README says after a contract change: the suites from the new contract.
    run(repo, "regrow", "expectations", "generate", env=env)
    run(repo, "git", "init", "-q", "-b", "main")
    commit(repo, "my loans")

    first = repro(repo, env=env)
    return OwnData(repo, landing, _digest(landing), first, env)


def _settings(own: OwnData):
    return load_settings(own.repo / "params.yaml")


def test_repro_runs_every_stage_on_the_users_landing(own_data):
    out = own_data.first_repro.stdout
    assert sorted(re.findall(r"^Running stage '([^']+)':$", out, re.M)) == sorted(STAGES)
    # simulator.enabled false: the stage ran, wrote its summary and left the files alone.
    assert "simulator disabled" in out
    summary = json.loads((own_data.repo / "metrics" / "simulation.json").read_text())
    assert summary == {"enabled": False}
    assert _digest(own_data.landing) == own_data.landing_digest
    assert not (own_data.repo / "data" / "landing").exists()
    # ingest read landing.path (outside the repository), and DVC tracks it there.
    lock = yaml.safe_load((own_data.repo / "dvc.lock").read_text())
    deps = {d["path"]: d for d in lock["stages"]["ingest"]["deps"]}
    assert deps[str(own_data.landing)]["md5"].endswith(".dir")
    assert "gate: PROMOTED v1" in out, out[-3000:]
    assert re.search(rf"^{LAST}: {PER_DAY} events scored by champion v1", out, re.M), out[-2000:]


def test_every_row_and_column_is_the_users_own(own_data):
    settings = _settings(own_data)
    lakehouse = lakehouse_of(settings)
    events = lakehouse.sql(
        'SELECT count(*) n, count(DISTINCT "Application ID") ids, '
        'sum(CASE WHEN "Has Cosigner" THEN 1 ELSE 0 END) cosigned FROM bronze.events'
    ).to_pylist()[0]
    assert events["n"] == events["ids"] == DAYS * PER_DAY
    assert 0 < events["cosigned"] < events["n"]  # true/false read as booleans
    grades = {r["Grade"] for r in lakehouse.sql('SELECT DISTINCT "Grade" FROM bronze.events')
              .to_pylist()}  # fmt: skip
    assert grades == {"A+", "A", "b/c", "ü-ß", "D & E"}
    quarantined = lakehouse.sql("SELECT count(*) n FROM bronze.quarantine").to_pylist()[0]["n"]
    assert quarantined == 0  # every label's event is known, within its 30 days
    # No entity anywhere, and no window feature: the contract's columns only.
    for table in ("silver.features", "silver.labels", "gold.predictions"):
        columns = lakehouse.sql(f"SELECT * FROM {table} LIMIT 0").column_names
        assert "Application ID" in columns and not any(c.startswith("prior_") for c in columns)
        assert not {"card_id", "transaction_id", "amount"} & set(columns), table
    features = lakehouse.sql("SELECT * FROM silver.features LIMIT 0").column_names
    assert [c for c in features if c in CONTRACT["numeric_features"]] == CONTRACT[
        "numeric_features"
    ]


def test_the_training_set_counts_a_label_at_exactly_the_delay(own_data):
    splits, manifest, _ = load_trainset(own_data.repo / "data" / "trainset")
    assert manifest["label_delay_days"] == DELAY_DAYS
    assert manifest["cutoff_date"] == str(LAST + dt.timedelta(days=1))
    assert manifest["columns"]["entity_id"] is None
    # Matured by the cut-off: the events of the days whose whole 30-day window ended before it.
    days = sorted({d for frame in splits.values() for d in frame[EVENT_DATE]})
    assert [str(d) for d in days] == [str(START + dt.timedelta(days=i)) for i in range(4)]
    # Labels that landed exactly 30 days after their application, before the cut-off:
    # counted as they arrived, not as negatives of a closed window.
    landed = _labels_at_the_boundary(own_data.landing)
    rows = pd.concat(splits.values())
    boundary = rows[rows["Application ID"].isin(landed)]
    assert len(boundary) > 5
    assert set(boundary[LABEL_STATUS]) == {"arrived"}
    assert dict(zip(boundary["Application ID"], boundary["Defaulted"], strict=True)) == {
        k: landed[k] for k in boundary["Application ID"]
    }
    assert manifest["splits"]["train"]["positives"] > 10


def _labels_at_the_boundary(landing: Path) -> dict[str, int]:
    """The landed labels that arrived exactly ``DELAY_DAYS`` after their event."""
    events = pd.concat(pd.read_csv(f) for f in landing.glob("events/*/*.csv"))
    labels = pd.concat(pd.read_csv(f) for f in landing.glob("labels/*/*.csv"))
    both = labels.merge(events, on="Application ID")
    delay = pd.to_datetime(both["Known At"]) - pd.to_datetime(both["Submitted At"])
    exact = both[delay == pd.Timedelta(days=DELAY_DAYS)]
    return dict(zip(exact["Application ID"], exact["Defaulted"], strict=True))


def test_the_gate_and_monitor_speak_the_users_columns(own_data):
    metrics = json.loads((own_data.repo / "metrics.json").read_text())
    assert "amount_rounding" in json.dumps(metrics)  # the loans' behavioral test ran
    slices = json.loads((own_data.repo / "plots" / "slices.json").read_text())
    assert {"A+", "b/c", "ü-ß"} <= {row["value"] for row in json.loads(json.dumps(slices))
                                    if isinstance(row, dict) and "value" in row}  # fmt: skip
    assert re.search(rf"^{LAST}: \d+ drift checks", own_data.first_repro.stdout, re.M)


def test_new_landing_files_rerun_ingest_and_nothing_else_changes(own_data):
    assert dvc(own_data.repo, "status", env=own_data.env).stdout.strip() == UP_TO_DATE
    extra = own_data.landing / "labels" / str(LAST) / "part-00001.csv"
    extra.write_text("Application ID,Defaulted,Known At\n")
    try:
        status = dvc(own_data.repo, "status", env=own_data.env).stdout
        assert re.findall(r"^(\w+):$", status, re.M) == ["ingest"]
        assert str(own_data.landing) in status
    finally:
        extra.unlink()
    assert dvc(own_data.repo, "status", env=own_data.env).stdout.strip() == UP_TO_DATE
