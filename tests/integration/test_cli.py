"""The regrow CLI end to end in one process (real Spark, real Delta tables)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from regrow.cli import app
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

    backwards = invoke("ingest", "--date", "2026-01-05", "--to", "2026-01-01", "--params", params)
    assert backwards.exit_code == 1
    assert "--to 2026-01-01 is before --date 2026-01-05" in backwards.output

    (tmp_path / "bad.yaml").write_text("dataset: {}\nlakehouse: {engin: x}\n")
    bad = invoke("tables", "--params", str(tmp_path / "bad.yaml"))
    assert bad.exit_code == 1
    assert "lakehouse.engin: unknown key" in bad.output
    assert "dataset.event_id: required key is missing" in bad.output
