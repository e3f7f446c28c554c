"""The job runner every ``jobs/*.py`` is: it parses the job's options, builds the context
from params.yaml, calls the stage with the options that were given, prints the report as
JSON, and turns an expected error into exit code 1 with the error logged."""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from regrow.orchestration.jobs import DAY_OPTION, run_job
from tests.conftest import write_params

TABLE_OPTION = {"--table": {"dest": "tables", "action": "append"}}


@dataclass
class Report:
    day: str
    run_id: str
    root: str
    tables: list[str] | None

    def as_dict(self) -> dict:
        return asdict(self)


def stage(ctx, day: dt.date, tables: list[str] | None = None) -> Report:
    """A stage that needs no Spark: the context builds none (it is lazy)."""
    return Report(str(day), ctx.run_id, ctx.lakehouse.root, tables)


class Blocked(RuntimeError):
    pass


def blocked_stage(ctx, day: dt.date) -> Report:
    raise Blocked(f"{day} is blocked: bronze.events has no rows")


@pytest.fixture
def params(tmp_path: Path) -> str:
    return str(write_params(tmp_path))


def test_a_day_job_calls_the_stage_with_the_day_and_prints_its_report(params, tmp_path, capsys):
    argv = ["--date", "2026-01-05", "--params", params, "--run-id", "scheduled__x"]
    assert run_job("A test job.", stage, {**DAY_OPTION, **TABLE_OPTION}, argv=argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"day": "2026-01-05", "run_id": "scheduled__x",
                       "root": str(tmp_path / "lakehouse"), "tables": None}  # fmt: skip


def test_a_repeated_option_reaches_the_stage(params, capsys):
    argv = ["--date", "2026-01-05", "--params", params, "--table", "a.b", "--table", "c.d"]
    assert run_job("A test job.", stage, {**DAY_OPTION, **TABLE_OPTION}, argv=argv) == 0
    assert json.loads(capsys.readouterr().out)["tables"] == ["a.b", "c.d"]


def test_the_run_id_defaults_to_airflows(params, capsys, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__from_airflow")
    assert run_job("A test job.", stage, argv=["--date", "2026-01-05", "--params", params]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == "manual__from_airflow"


def test_an_expected_error_is_one_logged_line_and_exit_1(params, capsys, caplog):
    argv = ["--date", "2026-01-05", "--params", params]
    with caplog.at_level(logging.ERROR):
        assert run_job("A test job.", blocked_stage, argv=argv, expected=(Blocked,)) == 1
    assert "2026-01-05 is blocked: bronze.events has no rows" in caplog.text
    assert capsys.readouterr().out == ""  # no report


def test_an_unexpected_error_propagates(params):
    with pytest.raises(Blocked):
        run_job("A test job.", blocked_stage, argv=["--date", "2026-01-05", "--params", params])


def test_a_bad_date_is_refused_by_the_parser(params, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_job("A test job.", stage, argv=["--date", "2026-13-40", "--params", params])
    assert exit_.value.code == 2
    assert "--date" in capsys.readouterr().err


def test_to_runs_every_day_of_the_range_in_one_application(params, capsys):
    argv = ["--date", "2026-01-30", "--to", "2026-02-02", "--params", params, "--table", "a.b"]
    assert run_job("A test job.", stage, {**DAY_OPTION, **TABLE_OPTION}, argv=argv) == 0
    days = json.loads(capsys.readouterr().out)["days"]
    assert [d["day"] for d in days] == ["2026-01-30", "2026-01-31", "2026-02-01", "2026-02-02"]
    assert all(d["tables"] == ["a.b"] for d in days)


def test_a_reversed_range_fails_naming_both_days(params, caplog, capsys):
    argv = ["--date", "2026-01-05", "--to", "2026-01-04", "--params", params]
    with caplog.at_level(logging.ERROR):
        assert run_job("A test job.", stage, argv=argv) == 1
    assert "--to 2026-01-04 is before --date 2026-01-05" in caplog.text
    assert capsys.readouterr().out == ""


def test_a_range_is_built_by_the_stages_builder_of_days(params, capsys):
    """A stage with a builder of days (features, labels: small days computed together)
    builds a range through it, made once for all the days; one day runs the stage."""
    made = []

    def of_days(ctx, days):
        made.append(list(days))
        return lambda day: stage(ctx, day, tables=["built together"])

    argv = ["--date", "2026-01-30", "--to", "2026-02-01", "--params", params]
    assert run_job("A test job.", stage, argv=argv, of_days=of_days) == 0
    days = json.loads(capsys.readouterr().out)["days"]
    assert [(d["day"], d["tables"]) for d in days] == [
        ("2026-01-30", ["built together"]),
        ("2026-01-31", ["built together"]),
        ("2026-02-01", ["built together"]),
    ]
    assert made == [[dt.date(2026, 1, 30), dt.date(2026, 1, 31), dt.date(2026, 2, 1)]]
    argv = ["--date", "2026-01-30", "--params", params]
    assert run_job("A test job.", stage, argv=argv, of_days=of_days) == 0
    assert json.loads(capsys.readouterr().out)["tables"] is None  # the stage itself
    assert len(made) == 1
