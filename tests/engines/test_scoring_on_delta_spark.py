"""tests/integration/test_scoring.py again, on the delta-spark engine."""

from __future__ import annotations

import pytest

from tests.integration.test_scoring import *  # noqa: F403  (its tests, collected again)


@pytest.fixture(scope="module")
def engine() -> str:
    return "delta-spark"
