"""docker/entrypoint.sh, run outside Docker with a fake ``airflow`` first on PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ENTRYPOINT = Path(__file__).resolve().parents[2] / "docker" / "entrypoint.sh"

FAKE_AIRFLOW = """#!/usr/bin/env bash
# Records each call; `db migrate` exits with $FAKE_MIGRATE_EXIT (default 0).
echo "airflow $*" >> "$FAKE_AIRFLOW_CALLS"
if [[ "$1 $2" == "db migrate" ]]; then exit "${FAKE_MIGRATE_EXIT:-0}"; fi
echo "fake airflow ran: $*"
"""


@pytest.fixture
def run(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "airflow"
    fake.write_text(FAKE_AIRFLOW)
    fake.chmod(0o755)
    calls = tmp_path / "calls.log"
    calls.touch()

    def run(*args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
        base = {k: v for k, v in os.environ.items() if k != "_AIRFLOW_DB_MIGRATE"}
        full_env = {
            **base,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_AIRFLOW_CALLS": str(calls),
            **env,
        }
        result = subprocess.run(
            [str(ENTRYPOINT), *args], env=full_env, capture_output=True, text=True, check=False
        )
        return result, calls.read_text().splitlines()

    return run


def test_runs_the_command_without_migrating_by_default(run):
    result, calls = run("echo", "hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\n"
    assert calls == []


@pytest.mark.parametrize("flag", ["true", "True", "1", "yes"])
def test_migrates_first_when_asked(run, flag: str):
    result, calls = run("airflow", "scheduler", _AIRFLOW_DB_MIGRATE=flag)
    assert result.returncode == 0, result.stderr
    assert calls == ["airflow db migrate", "airflow scheduler"]
    assert "fake airflow ran: scheduler" in result.stdout


@pytest.mark.parametrize("flag", ["false", "0", "no", ""])
def test_does_not_migrate_when_told_not_to(run, flag: str):
    result, calls = run("airflow", "dag-processor", _AIRFLOW_DB_MIGRATE=flag)
    assert result.returncode == 0, result.stderr
    assert calls == ["airflow dag-processor"]


def test_failed_migration_stops_before_the_command(run):
    result, calls = run("airflow", "scheduler", _AIRFLOW_DB_MIGRATE="true", FAKE_MIGRATE_EXIT="3")
    assert result.returncode != 0
    assert calls == ["airflow db migrate"]
    assert "airflow db migrate failed" in result.stderr


def test_a_bare_airflow_subcommand_runs_through_airflow(run):
    result, calls = run("dags", "list")
    assert result.returncode == 0, result.stderr
    assert calls == ["airflow dags list"]


def test_no_command_prints_the_airflow_version(run):
    result, calls = run()
    assert result.returncode == 0, result.stderr
    assert calls == ["airflow version"]


def test_the_command_replaces_the_shell(run):
    """exec: the command gets the entrypoint's PID, so signals (docker stop) reach it."""
    proc = subprocess.Popen(
        [str(ENTRYPOINT), "bash", "-c", "echo $$"], stdout=subprocess.PIPE, text=True
    )
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert int(out.strip()) == proc.pid


def test_the_command_exit_code_is_passed_through(run):
    result, _ = run("bash", "-c", "exit 7")
    assert result.returncode == 7
