"""The quarantine limit of a day's gate: a fraction of what landed, with a floor."""

from __future__ import annotations

import pytest

from regrow.settings import ValidationSettings
from regrow.validation.gate import blocked_by_quarantine, quarantine_limit


@pytest.mark.parametrize(
    ("landed", "quarantined", "blocked"),
    [
        (165, 4, False),  # 2.4% of a small day: row errors, not a broken feed
        (165, 19, False),
        (165, 20, True),  # the floor reached: blocked
        (2060, 41, False),  # a simulator-sized day: the 2% decides
        (2060, 42, True),
    ],
)
def test_the_fraction_blocks_only_from_the_minimum_count(landed, quarantined, blocked):
    cfg = ValidationSettings(max_quarantine_fraction=0.02, min_quarantined_to_block=20)

    assert blocked_by_quarantine(cfg, landed, quarantined) is blocked
    assert quarantine_limit(cfg, landed) == max(int(0.02 * landed), 19)


def test_a_minimum_of_one_is_the_fraction_alone():
    cfg = ValidationSettings(max_quarantine_fraction=0.02, min_quarantined_to_block=1)

    assert quarantine_limit(cfg, 165) == 3
    assert blocked_by_quarantine(cfg, 165, 4)
    assert quarantine_limit(cfg, 0) == 0  # an empty day tolerates nothing
