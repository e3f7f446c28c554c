"""The environment `make setup` builds: its packages' bytecode is compiled.

Where PYTHONDONTWRITEBYTECODE is set (this machine sets it; CI runs on one like it)
Python writes no ``.pyc``, so without ``uv sync --compile-bytecode`` every process compiles
each module it imports: 8.5 s to import great_expectations instead of 3.7 s, paid by every
CLI stage, Airflow task and test worker (docs/spark.md, "Where the test suite's time goes").
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest

# The heavy imports of every stage process.
PACKAGES = ["great_expectations", "mlflow", "airflow", "pyspark", "pandas", "xgboost"]


@pytest.mark.parametrize("package", PACKAGES)
def test_the_installed_packages_are_compiled(package):
    source = Path(importlib.import_module(package).__file__)
    cached = Path(importlib.util.cache_from_source(str(source)))
    assert cached.is_file(), (
        f"{package} has no bytecode ({cached}): run `make setup` "
        "(uv sync --frozen --compile-bytecode)"
    )
    # Not stale: Python would ignore it and compile again.
    assert cached.stat().st_mtime >= source.stat().st_mtime
