"""The import-linter contracts of pyproject.toml hold on the code, and break when a module
imports a layer above its own: a copy of the package with one upward import is refused."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with pyproject.toml's contracts on the packages under ``root``."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(REPO / "pyproject.toml")],
        cwd=root,
        env={"PYTHONPATH": f"{root}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The library and the DAG files, copied where a test may break them."""
    shutil.copytree(REPO / "include" / "regrow", tmp_path / "regrow",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copytree(REPO / "dags", tmp_path / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_code_keeps_every_contract(copy):
    result = lint(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout and "BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("module", "upward", "contract"),
    [
        ("regrow/data/features.py", "regrow.model.scoring", "imports only go down"),
        ("regrow/storage/lakehouse.py", "regrow.validation", "imports only go down"),
        ("regrow/catalog.py", "regrow.storage", "imports only go down"),
        ("dags/regrow_score.py", "regrow.model.scoring", "DAG files import only"),
    ],
)
def test_an_upward_import_breaks_a_contract(copy, module, upward, contract):
    path = copy / module
    path.write_text(path.read_text() + f"\nimport {upward}  # the trial\n")
    result = lint(copy)
    assert result.returncode != 0
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout
    assert upward in result.stdout  # the report names the offending import
