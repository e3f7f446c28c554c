"""tests/integration/test_lakehouse.py again, on the delta-spark engine (Delta Lake's JVM
connector, fetched by ``make setup``)."""

from __future__ import annotations

import pytest

from tests.integration.test_lakehouse import *  # noqa: F403  (its tests, collected again)


@pytest.fixture(scope="module")
def engine() -> str:
    return "delta-spark"
