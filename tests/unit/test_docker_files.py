"""The Dockerfile, docker-compose.yaml and .env.example, checked as files (no Docker engine
here): the base image is the locked Airflow, hadolint passes, the compose stack's variables
are all documented, no secret is committed, and its connections are ones Airflow parses
for the connection ids params.yaml names. `make lint` also runs `docker compose config`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from regrow.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|JWT")


def dockerfile_args() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text()
    return dict(re.findall(r"^ARG ([A-Z_]+)=(\S+)$", text, flags=re.MULTILINE))


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}; $$ is a $."""

    def value(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        found = env.get(name, "")
        if op and op.endswith("?") and not found:
            raise AssertionError(f"{name} is required: {arg}")
        return found if found or not op else arg

    return VARIABLE.sub(value, text.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def stack() -> dict:
    filled = {k: v or "placeholder" for k, v in env_example().items()}
    return yaml.safe_load(interpolate((ROOT / "docker-compose.yaml").read_text(), filled))


def test_the_base_image_is_the_locked_airflow():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    airflow = next(p["version"] for p in lock["package"] if p["name"] == "apache-airflow")
    args = dockerfile_args()
    assert args["AIRFLOW_VERSION"] == airflow
    assert args["PYTHON_VERSION"] == (ROOT / ".python-version").read_text().strip()
    assert (
        "FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}"
        in (ROOT / "Dockerfile").read_text()
    )


def test_hadolint_passes():
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run(
        [str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_variable_of_the_stack_is_documented():
    # $${HOSTNAME}/$${POSTGRES_*} are the containers' own, escaped from compose.
    text = (ROOT / "docker-compose.yaml").read_text().replace("$$", "")
    used = {m.group(1) for m in VARIABLE.finditer(text)}
    assert used - set(env_example()) == set()


def test_no_secret_is_committed():
    example = env_example()
    secrets = {k: v for k, v in example.items() if SECRET_NAME.search(k)}
    assert {"POSTGRES_PASSWORD", "AWS_SECRET_ACCESS_KEY", "AIRFLOW_ADMIN_PASSWORD"} <= set(secrets)
    assert {k: v for k, v in secrets.items() if v} == {}
    raw = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key) and not key.endswith(("_FILE", "_HOSTS")):
                assert str(value).startswith("${"), f"{name}: {key} is not from .env"
    gitignore = (ROOT / ".gitignore").read_text().splitlines()
    assert "/.env" in gitignore


def test_the_stack_has_its_services(stack):
    assert set(stack["services"]) == {
        "postgres", "minio", "airflow-init", "airflow-apiserver", "airflow-scheduler",
        "airflow-dag-processor", "airflow-triggerer", "mlflow",
    }  # fmt: skip
    scheduler = stack["services"]["airflow-scheduler"]
    assert scheduler["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert (
        "postgresql+psycopg2://" in scheduler["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    )
    mounts = {v.split(":")[1] for v in scheduler["volumes"]}
    assert {"/opt/regrow/dags", "/opt/regrow/plugins", "/opt/regrow/params.yaml"} <= mounts
    init = stack["services"]["airflow-init"]
    assert init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    assert init["command"][1] == "/opt/regrow/docker/stack_init.py"
    mlflow = " ".join(stack["services"]["mlflow"]["command"])
    assert "--artifacts-destination=s3://" in mlflow and "postgresql+psycopg2://" in mlflow


def test_the_connections_are_the_ones_params_yaml_names(stack):
    from airflow.models.connection import Connection

    cfg = load_settings(ROOT / "params.yaml").airflow
    env = stack["services"]["airflow-scheduler"]["environment"]
    expected = {
        cfg.aws_conn_id: "aws",
        cfg.spark_conn_id: "spark",
        cfg.spark_connect_conn_id: "spark_connect",
    }
    for conn_id, conn_type in expected.items():
        value = env[f"AIRFLOW_CONN_{conn_id.upper()}"]
        conn = Connection.from_json(value, conn_id=conn_id)
        assert conn.conn_type == conn_type
    aws = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert aws["extra"]["endpoint_url"] == env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    init = stack["services"]["airflow-init"]["command"]
    assert {f"--connection={c}" for c in expected} <= set(init)
