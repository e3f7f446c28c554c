"""docker/stack_init.py, the compose stack's init step, run outside Docker: against the
moto S3 server on 127.0.0.1 in place of the stack's MinIO, and the real ``airflow`` CLI
(its connections from AIRFLOW_CONN_* variables, as docker-compose.yaml defines them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "stack_init.py"

pytestmark = pytest.mark.slow  # each `airflow connections get` starts Airflow (~15-30 s)


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)  # the venv's `airflow`
    full = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=full,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_creates_the_bucket_once_and_writes_the_password(s3_server: str, tmp_path: Path):
    bucket = f"stack-init-{os.getpid()}"
    passwords = tmp_path / "config" / "passwords.json"
    env = {"REGROW_BUCKETS": bucket, "AIRFLOW_ADMIN_PASSWORD": "s3cret-from-env"}

    first = run("--passwords-file", str(passwords), **env)
    assert first.returncode == 0, first.stderr
    assert f"created: ['{bucket}']" in first.stdout
    names = {
        b["Name"] for b in boto3.client("s3", endpoint_url=s3_server).list_buckets()["Buckets"]
    }
    assert bucket in names
    assert json.loads(passwords.read_text()) == {"admin": "s3cret-from-env"}

    again = run("--passwords-file", str(passwords), **env)
    assert again.returncode == 0, again.stderr
    assert "created: none" in again.stdout


def test_an_s3_store_that_does_not_answer_is_one_line(s3_server: str, closed_port: int):
    closed = f"http://127.0.0.1:{closed_port}"
    result = run("--wait", "0", REGROW_BUCKETS="regrow", AWS_ENDPOINT_URL=closed)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"stack_init: S3 at {closed} did not answer within 0 s")


def test_an_empty_admin_password_is_refused(tmp_path: Path):
    result = run(
        "--passwords-file", str(tmp_path / "p.json"), REGROW_BUCKETS="", AIRFLOW_ADMIN_PASSWORD=""
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "stack_init: AIRFLOW_ADMIN_PASSWORD is empty: set it in .env (see .env.example)"
    )
    assert not (tmp_path / "p.json").exists()


@pytest.fixture
def airflow_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "airflow"
    home.mkdir()
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "REGROW_BUCKETS": "",
    }


def test_connections_from_the_environment_resolve(airflow_env):
    conn = {"conn_type": "spark_connect", "host": "127.0.0.1", "port": 15002}
    result = run(
        "--connection",
        "spark_connect_default",
        AIRFLOW_CONN_SPARK_CONNECT_DEFAULT=json.dumps(conn),
        **airflow_env,
    )
    assert result.returncode == 0, result.stderr
    assert "connections spark_connect_default resolve" in result.stdout
    assert "15002" not in result.stdout  # values are never printed


def test_a_missing_connection_is_named(airflow_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--connection", "regrow_nowhere"],
        env={
            **env,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
            **airflow_env,
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "stack_init: Airflow connection 'regrow_nowhere' is not defined: set "
        "AIRFLOW_CONN_REGROW_NOWHERE (docker-compose.yaml, x-airflow-env) or create it with "
        "`airflow connections add`"
    )
