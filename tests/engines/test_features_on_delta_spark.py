"""tests/integration/test_features.py again, on the delta-spark engine."""

from __future__ import annotations

import pytest

from tests.integration.test_features import *  # noqa: F403  (its tests, collected again)

# Not again: 30 simulated days twice (4 minutes on delta-spark); the range and day jobs
# share every write path the other tests here cover.
del test_a_day_alone_equals_the_same_day_of_a_30_day_backfill  # noqa: F821


@pytest.fixture(scope="module")
def engine() -> str:
    return "delta-spark"
