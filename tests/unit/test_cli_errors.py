"""regrow.cli.errors: every command's exception becomes one line (a bug says so), and a
range goes on past a failed day with --keep-going."""

from __future__ import annotations

import datetime as dt

import pytest
import typer
from botocore.exceptions import EndpointConnectionError
from typer.testing import CliRunner

from regrow.cli.common import DayFailed, run_days
from regrow.cli.errors import Commands, explain, set_debug
from regrow.settings import ConfigError

DAYS = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(3)]


@pytest.fixture(autouse=True)
def no_debug_after():
    yield
    set_debug(False)  # --debug is process state: the next test starts without it


def toy_app() -> typer.Typer:
    """A root group like regrow's: one command per way to fail."""
    app = typer.Typer(cls=Commands)

    @app.callback()
    def _options(debug: bool = typer.Option(False, "--debug")) -> None:
        set_debug(debug)

    @app.command()
    def bug() -> None:
        {}["missing"]

    @app.command()
    def config() -> None:
        raise ConfigError("train.max_depth: must be > 0 (got -1)")

    @app.command()
    def days(keep_going: bool = typer.Option(False, "--keep-going")) -> None:
        def run(day: dt.date) -> None:
            if day == DAYS[1]:
                raise DayFailed(f"{day}: 40 of 100 landed rows were quarantined")
            typer.echo(f"{day}: ok")

        run_days(DAYS, run, keep_going)

    return app


def test_a_bug_is_one_line_that_points_at_debug_and_debug_shows_the_trace():
    app = toy_app()
    result = CliRunner().invoke(app, ["bug"])
    assert result.exit_code == 1
    assert result.stderr == (
        "error: unexpected error (KeyError: 'missing'); rerun with --debug for the trace\n"
    )
    debug = CliRunner().invoke(app, ["--debug", "bug"])
    assert isinstance(debug.exception, KeyError)


def test_the_library_s_errors_are_shown_as_written():
    result = CliRunner().invoke(toy_app(), ["config"])
    assert (result.exit_code, result.stderr) == (
        1,
        "error: train.max_depth: must be > 0 (got -1)\n",
    )


def test_a_range_stops_at_a_failed_day_unless_told_to_keep_going():
    app = toy_app()
    stopped = CliRunner().invoke(app, ["days"])
    assert stopped.exit_code == 1
    assert stopped.stdout == "2026-01-01: ok\n"
    assert stopped.stderr == (
        "error: 2026-01-02: 40 of 100 landed rows were quarantined (1 later day(s) not run: "
        "--keep-going goes on past it)\n"
    )
    kept = CliRunner().invoke(app, ["days", "--keep-going"])
    assert kept.exit_code == 1
    assert kept.stdout == "2026-01-01: ok\n2026-01-03: ok\n"
    assert kept.stderr.splitlines() == [
        "error: 2026-01-02: 40 of 100 landed rows were quarantined",
        "error: 1 of 3 day(s) failed: 2026-01-02 (40 of 100 landed rows were quarantined)",
    ]


def test_an_unreachable_store_is_named_as_such():
    err = EndpointConnectionError(endpoint_url="http://127.0.0.1:9/bucket")
    assert explain(err).startswith(
        "storage cannot be used: the endpoint cannot be reached (Could not connect to the "
        'endpoint URL: "http://127.0.0.1:9/bucket"): check landing.path, lakehouse.root'
    )
