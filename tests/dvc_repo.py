"""Running `dvc repro` and friends in a temporary copy of the repository, as a user runs
them: the environment the stages get, the commands, and what a run printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# What `dvc repro` needs from a clone: the pipeline, its params, the DVC config, the
# .gitignore that covers the outs, and the files the stages depend on.
PIPELINE_FILES = [
    "dvc.yaml",
    "params.yaml",
    ".dvc",
    ".dvcignore",
    ".gitignore",
    "include",
    "expectations",
]
STAGES = [
    "simulate", "ingest", "validate", "features", "labels", "trainset", "train", "evaluate",
    "score", "monitor",
]  # fmt: skip
UP_TO_DATE = "Data and pipelines are up to date."


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # REGROW_PARAMS would point the stages away from the copy's params.yaml; the S3
        # endpoint of the remote under test comes from its DVC config, not the environment.
        if k not in ("REGROW_PARAMS", "AWS_ENDPOINT_URL", "VIRTUAL_ENV")
    }
    return (
        env
        | {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "DVC_NO_ANALYTICS": "1",
            "GIT_AUTHOR_NAME": "regrow tests",
            "GIT_AUTHOR_EMAIL": "tests@regrow.invalid",
            "GIT_COMMITTER_NAME": "regrow tests",
            "GIT_COMMITTER_EMAIL": "tests@regrow.invalid",
        }
        | dict(extra or {})
    )


def run(
    repo: Path,
    *args: str,
    check: bool = True,
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
):
    """Run a command in ``repo`` (``env``: variables set on top of the stages' environment)."""
    result = subprocess.run(
        list(args), cwd=repo, env=_env(env), capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
            f"\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result


def dvc(repo: Path, *args: str, **kwargs):
    return run(repo, str(BIN / "dvc"), *args, **kwargs)


def repro(repo: Path, **kwargs):
    # A guard against a hang, not a speed check: the own-data pipeline's 34 days took 1,002 s
    # in a fresh clone's suite, and over 1,500 s with a benchmark beside it on 2 cores.
    return dvc(repo, "repro", timeout=2400, **kwargs)


def ran(result) -> list[str]:
    """The stages a `dvc repro` ran, in order."""
    return re.findall(r"^Running stage '([^']+)':$", result.stdout, re.M)


def skipped(result) -> list[str]:
    return re.findall(r"^Stage '([^']+)' didn't change, skipping$", result.stdout, re.M)


def commit(repo: Path, message: str) -> None:
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", message)


def edit_params(repo: Path, **sections: dict) -> None:
    path = repo / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    for name, values in sections.items():
        raw[name] = {**raw[name], **values}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
