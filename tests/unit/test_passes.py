"""How a range's days are cut into passes (regrow.data.passes): in order, each pass
holding at most the limit's rows, a day over it alone."""

from __future__ import annotations

import datetime as dt

from regrow.data.passes import cut_into_passes

DAYS = [dt.date(2026, 1, d) for d in range(1, 8)]


def test_days_are_cut_in_order_at_the_limit_and_a_large_day_is_a_pass_of_its_own():
    rows = dict(zip(DAYS, [40, 40, 30, 500, 10, 60, 50], strict=True))

    passes = cut_into_passes(DAYS, rows.__getitem__, limit=100)

    assert passes == [DAYS[0:2], DAYS[2:3], DAYS[3:4], DAYS[4:6], DAYS[6:7]]
    assert [d for p in passes for d in p] == DAYS  # every day once, in the caller's order
    assert all(sum(rows[d] for d in p) <= 100 for p in passes if len(p) > 1)


def test_days_of_no_rows_join_any_pass_and_no_day_gives_no_pass():
    assert cut_into_passes(DAYS[:3], lambda day: 0, limit=1) == [DAYS[:3]]
    assert cut_into_passes([], lambda day: 1) == []
