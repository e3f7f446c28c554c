"""The failure paths of regrow's local Airflow services that need no Airflow running: a
taken port, nothing to stop, nothing to report or backfill on. (The services themselves run
in tests/integration/test_airflow_scheduler.py.)"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regrow.cli import app
from regrow.orchestration import airflow_services
from tests.conftest import write_params

runner = CliRunner()


@pytest.fixture
def taken_port():
    """A port of 127.0.0.1 in this test's range that something listens on."""
    with socket.socket() as sock:
        for port in range(8180, 8190):
            try:
                sock.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
        else:
            pytest.fail("no free port in 8180-8189 to occupy")
        sock.listen()
        yield port


def test_a_taken_port_is_one_line_naming_it_and_the_log(tmp_path: Path, taken_port: int):
    params = write_params(tmp_path, airflow={"spark_via": "submit"})
    home = tmp_path / "home"
    with pytest.raises(airflow_services.ServicesError) as raised:
        airflow_services.start(home, taken_port, params)
    message = str(raised.value)
    assert f"127.0.0.1:{taken_port}" in message and "port is taken" in message
    assert str(home / "services" / "api-server.log") in message
    assert "\n" not in message
    assert airflow_services.status(home) is None  # nothing was started

    result = runner.invoke(app, ["airflow", "up", "--port", str(taken_port), "--params",
                                 str(params), "--home", str(home)])  # fmt: skip
    assert result.exit_code == 1
    assert f"error: the Airflow api-server cannot listen on 127.0.0.1:{taken_port}" in result.output


def test_nothing_running_is_reported_not_raised(tmp_path: Path):
    home = tmp_path / "home"
    assert airflow_services.stop(home) == []
    assert airflow_services.status(home) is None
    with pytest.raises(airflow_services.ServicesError, match="no Airflow of regrow runs on"):
        airflow_services.environment(home)

    down = runner.invoke(app, ["airflow", "down", "--home", str(home)])
    assert down.exit_code == 0 and f"no Airflow of regrow runs on {home}" in down.output
    status = runner.invoke(app, ["airflow", "status", "--home", str(home)])
    assert status.exit_code == 1
    assert f"error: no Airflow of regrow runs on {home}: run `regrow airflow up`" in status.output
    backfill = runner.invoke(
        app,
        ["airflow", "backfill", "--from", "2026-01-01", "--to", "2026-01-02", "--home", str(home)],
    )
    assert backfill.exit_code == 1 and "run `regrow airflow up` first" in backfill.output
