"""tests/integration/test_ingest.py again, on the delta-spark engine."""

from __future__ import annotations

import pytest

from tests.integration.test_ingest import *  # noqa: F403  (its tests, collected again)


@pytest.fixture(scope="module")
def engine() -> str:
    return "delta-spark"
