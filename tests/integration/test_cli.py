"""The regrow CLI end to end in one process (real Spark, real Delta tables)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regrow.cli import app
from regrow.settings import ConfigError
from tests.conftest import write_params

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_help_explains_every_command():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in (
        "simulate", "ingest", "validate", "features", "labels", "trainset",
        "tables", "history", "query", "dags",
    ):  # fmt: skip
        assert command in result.output
    assert "SQL (DuckDB)" in invoke("query", "--help").output


def test_simulate_ingest_tables_query(spark, tmp_path):
    params = str(
        write_params(
            tmp_path,
            simulator={"days": 2, "events_per_day": 120, "n_entities": 30, "scenario": "stable"},
        )
    )

    simulated = invoke("simulate", "--params", params)
    assert simulated.exit_code == 0
    assert (
        "simulated 2 day(s) (stable) from 2026-01-01 to 2026-01-02: 240 events" in simulated.output
    )

    ingested = invoke("ingest", "--all", "--params", params)
    assert ingested.exit_code == 0, ingested.output
    assert "2026-01-01: events 120 in -> 120 bronze, 0 quarantined" in ingested.output
    assert "2026-01-02: events 120 in -> 120 bronze, 0 quarantined" in ingested.output

    # Many days: every day's results, and the Data Docs built once at the end.
    validated = invoke("validate", "--all", "--params", params)
    assert validated.exit_code == 0, validated.output
    for day in ("2026-01-01", "2026-01-02"):
        assert f"bronze.events {day}: passed" in validated.output
        pages = tmp_path / "reports" / "data_docs" / "validations" / "bronze" / "events"
        assert list(pages.glob(f"event_date={day}__*/*/*.html")), day
    [docs] = [line for line in validated.output.splitlines() if line.startswith("Data Docs: ")]
    assert docs == f"Data Docs: {tmp_path / 'reports' / 'data_docs' / 'index.html'}"
    assert "2026-01-02" in Path(docs.removeprefix("Data Docs: ")).read_text()
    ranged = invoke("validate", "--date", "2026-01-01", "--to", "2026-01-02",
                    "--table", "bronze.events", "--params", params)  # fmt: skip
    assert ranged.exit_code == 0, ranged.output
    assert [line.split(":")[0] for line in ranged.output.splitlines() if "passed" in line] == [
        "bronze.events 2026-01-01", "bronze.events 2026-01-02",
    ]  # fmt: skip
    assert ranged.output.count("Data Docs: ") == 1

    listed = invoke("tables", "--params", params)
    assert listed.exit_code == 0
    line = next(row for row in listed.output.splitlines() if row.startswith("bronze.events"))
    assert line.split()[1:3] == ["1", "240"]  # version 1 (two daily commits), 240 rows

    queried = invoke(
        "query",
        "SELECT CAST(event_date AS VARCHAR) d, count(*) n FROM bronze.events GROUP BY 1 ORDER BY 1",
        "--format",
        "json",
        "--params",
        params,
    )
    assert queried.exit_code == 0
    assert [json.loads(row) for row in queried.output.splitlines()] == [
        {"d": "2026-01-01", "n": 120},
        {"d": "2026-01-02", "n": 120},
    ]
    history = invoke("history", "bronze.events", "--params", params)
    assert history.output.splitlines()[0].startswith("v1 ")


def test_errors_are_one_clear_line(tmp_path):
    params = str(write_params(tmp_path))
    unknown = invoke("query", "SELECT * FROM silver.nothing", "--params", params)
    assert unknown.exit_code == 1
    assert "query names silver.nothing, which does not exist" in unknown.output

    both = invoke("ingest", "--all", "--date", "2026-01-01", "--params", params)
    assert both.exit_code == 1
    assert "give either --date (and --to) or --all" in both.output

    for command in ("ingest", "validate"):
        backwards = invoke(
            command, "--date", "2026-01-05", "--to", "2026-01-01", "--params", params
        )
        assert backwards.exit_code == 1, command
        assert "--to 2026-01-01 is before --date 2026-01-05" in backwards.output, command
    # --to beside --all or --latest would be ignored: every command says so instead.
    for command, whole in [
        ("ingest", "--all"),
        ("validate", "--all"),
        ("features", "--all"),
        ("labels", "--all"),
        ("score", "--latest"),
        ("monitor", "--latest"),
    ]:
        alone = invoke(command, whole, "--to", "2026-01-02", "--params", params)
        assert alone.exit_code == 1, command
        assert "--to ends a range that --date starts" in alone.output, command

    (tmp_path / "bad.yaml").write_text("dataset: {}\nlakehouse: {engin: x}\n")
    bad = invoke("tables", "--params", str(tmp_path / "bad.yaml"))
    assert bad.exit_code == 1
    assert "lakehouse.engin: unknown key" in bad.output
    assert "dataset.event_id: required key is missing" in bad.output


def test_debug_shows_the_traceback_that_an_error_line_leaves_out(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("dataset: {event_id: [\n")
    plain = invoke("tables", "--params", str(bad))
    assert plain.exit_code == 1
    [line] = plain.stderr.splitlines()
    assert line.startswith("error: ") and str(bad) in line
    assert "Traceback" not in plain.output

    for args, env in ((["--debug"], {}), ([], {"REGROW_DEBUG": "1"})):
        debug = runner.invoke(app, [*args, "tables", "--params", str(bad)], env=env)
        assert debug.exit_code == 1 and isinstance(debug.exception, ConfigError)


@pytest.mark.timeout(120)
def test_unreachable_s3_is_one_line_naming_the_endpoint_and_the_setting(
    tmp_path, monkeypatch, closed_port
):
    """Through s3fs (listing tables) and delta-rs (reading one): refused in seconds, not
    after botocore's and object_store's retry loops."""
    port = closed_port
    for key, value in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_REGION": "us-east-1",
                       "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    params = str(write_params(tmp_path, lakehouse={"root": "s3://regrow-lake/tables"}))
    for args in (["tables"], ["query", "SELECT count(*) FROM bronze.events"]):
        result = invoke(*args, "--params", params)
        assert result.exit_code == 1, result.output
        [line] = result.stderr.splitlines()
        assert line.startswith("error: cannot use s3://regrow-lake/tables")
        assert f"at the S3 endpoint http://127.0.0.1:{port}" in line
        assert "(lakehouse.root)" in line and "lakehouse.storage_options" in line
        assert "Traceback" not in result.output


@pytest.mark.timeout(180)
def test_an_unreachable_s3_landing_is_one_line_naming_the_endpoint(
    spark, tmp_path, monkeypatch, closed_port
):
    port = closed_port
    for key, value in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_REGION": "us-east-1",
                       "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    params = str(write_params(tmp_path, landing={"path": "s3://regrow-landing/in"}))
    result = invoke("ingest", "--date", "2026-01-01", "--params", params)
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and f"127.0.0.1:{port}" in line and "landing.path" in line
    assert "Traceback" not in result.output


def test_a_missing_bucket_is_named(s3_server, tmp_path):
    params = str(write_params(tmp_path, lakehouse={"root": "s3://regrow-no-such-bucket/lake"}))
    result = invoke("tables", "--params", params)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: cannot use s3://regrow-no-such-bucket/lake (lakehouse.root) at the S3 endpoint "
        f"{s3_server} (from lakehouse.storage_options or $AWS_ENDPOINT_URL): the bucket does "
        "not exist; create the bucket or fix lakehouse.root"
    ]


@pytest.mark.timeout(600)
def test_ingest_keeps_going_past_bad_days_one_line_each_without_spark_noise(tmp_path):
    """A real `regrow ingest` (its own Spark) over three days: the first quarantines more
    rows than the gate allows, the third never landed. Each ends in one line on stderr,
    the range goes on (the second is ingested), the last line lists both failed days;
    Spark's log4j lines go to its log file."""
    params = write_params(
        tmp_path,
        simulator={"days": 2, "events_per_day": 60, "n_entities": 20, "scenario": "stable"},
    )
    assert invoke("simulate", "--params", str(params)).exit_code == 0
    [day1] = (tmp_path / "landing" / "events" / "2026-01-01").glob("*.csv")
    with day1.open("a") as out:
        out.writelines("not,an,event\n" for _ in range(30))

    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "REGROW_DEBUG")}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("regrow")), "ingest", "--date", "2026-01-01",
         "--to", "2026-01-03", "--keep-going", "--params", str(params)],
        capture_output=True, text=True, env=env, timeout=540,
    )  # fmt: skip

    assert done.returncode == 1, done.stderr
    assert "2026-01-01: events 90 in -> 60 bronze, 30 quarantined" in done.stdout
    assert "2026-01-02: events 60 in -> 60 bronze, 0 quarantined" in done.stdout
    reasons = re.findall(r"^  events quarantined +(\d+) x ", done.stdout, re.MULTILINE)
    assert sum(map(int, reasons)) == 30  # the day's reasons, counted
    errors = done.stderr.splitlines()
    assert len(errors) == 3, done.stderr
    assert re.match(
        r"error: 2026-01-01: 30 of \d+ landed rows were quarantined, more than the 19 the gate "
        r"allows \(validation.max_quarantine_fraction 0.02, validation.min_quarantined_to_block "
        r"20\): `regrow validate` would block the day",
        errors[0],
    )
    assert errors[1].startswith("error: no events landed for 2026-01-03")
    assert errors[2].startswith("error: 2 of 3 day(s) failed: 2026-01-01 (30 of ")
    assert "; 2026-01-03 (no events landed" in errors[2]
    for noise in ("Traceback", "WARN", "log4j", "Setting default log level", "NativeCodeLoader"):
        assert noise not in done.stderr
    assert "log4j" in (tmp_path / ".spark-connect" / "driver.log").read_text()


def test_simulate_runs_only_when_configured_and_never_over_a_users_files(tmp_path):
    users = tmp_path / "landing" / "events" / "2026-01-01"
    users.mkdir(parents=True)
    (users / "mine.csv").write_text("id,at\n1,2026-01-01T00:00:00Z\n")
    summary = tmp_path / "metrics" / "simulation.json"

    off = invoke("simulate", "--summary", str(summary),
                 "--params", str(write_params(tmp_path, simulator=None)))  # fmt: skip
    assert off.exit_code == 0, off.output
    assert "simulator disabled" in off.output
    assert json.loads(summary.read_text()) == {"enabled": False}

    on = str(write_params(tmp_path, simulator={"days": 2, "events_per_day": 20, "n_entities": 5}))
    refused = invoke("simulate", "--replace", "--params", on)
    assert refused.exit_code == 1
    assert "holds files the simulator did not write" in refused.output
    assert "simulator.enabled: false" in refused.output
    assert [p.name for p in users.iterdir()] == ["mine.csv"]

    (users / "mine.csv").unlink()
    users.rmdir()
    assert invoke("simulate", "--days", "3", "--params", on).exit_code == 0
    replaced = invoke("simulate", "--replace", "--summary", str(summary), "--params", on)
    assert replaced.exit_code == 0, replaced.output
    # --replace: the earlier simulation's third day is gone, not left to be ingested.
    assert sorted(p.name for p in (tmp_path / "landing" / "events").iterdir()) == [
        "2026-01-01", "2026-01-02",
    ]  # fmt: skip
    assert json.loads(summary.read_text())["days"] == ["2026-01-01", "2026-01-02"]


def test_simulate_refuses_days_that_are_not_over_and_keeps_the_earlier_simulation(tmp_path):
    params = str(
        write_params(tmp_path, simulator={"days": 2, "events_per_day": 20, "n_entities": 5})
    )
    assert invoke("simulate", "--params", params).exit_code == 0

    refused = invoke("simulate", "--replace", "--days", "3000", "--params", params)

    assert refused.exit_code == 1
    assert "3000 simulated day(s) from simulator.start_date 2026-01-01 end on 2034-03-19" in (
        " ".join(refused.output.split())
    )
    assert "Traceback" not in refused.output
    assert sorted(p.name for p in (tmp_path / "landing" / "events").iterdir()) == [
        "2026-01-01", "2026-01-02",
    ]  # fmt: skip


def test_dags_test_refuses_a_day_before_the_start_date(tmp_path):
    params = str(write_params(tmp_path, airflow={"start_date": "2026-01-01"}))

    early = invoke("dags", "test", "regrow_ingest", "--date", "2025-12-31",
                   "--airflow-home", str(tmp_path / "airflow"), "--params", params)  # fmt: skip

    assert early.exit_code == 1
    assert "2025-12-31 is before airflow.start_date (2026-01-01)" in early.output
    assert "Set airflow.start_date in params.yaml to 2025-12-31 or earlier" in early.output
    assert not (tmp_path / "airflow").exists()  # refused before Airflow was touched
