"""The rows a warm start fits its new trees on (``regrow.model.training.warm_rows``): newer
than the champion's window, and within ``train.warm_start.recent_days`` of the newest
training event; and the fall-back to a retrain from scratch when they are too few."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pandas as pd

from regrow.model.training import STATELESS, WARM_START, Parent, plan_mode, warm_rows
from regrow.settings import TrainSettings, WarmStartSettings

DAY0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
TS = "Submitted At"  # not the simulator's column name


def split(days: int, per_day: int = 3) -> pd.DataFrame:
    """``per_day`` rows a day over ``days`` days, between 01:00 and 23:00."""
    step = 22 * 60 // per_day
    rows = [(d, DAY0 + dt.timedelta(days=d, hours=1, minutes=step * k))
            for d in range(days) for k in range(per_day)]  # fmt: skip
    return pd.DataFrame(rows, columns=["day", TS])


def parent(last_day: int, trees: int = 10) -> Parent:
    """A champion whose newest training event was at the end of ``last_day``."""
    end = DAY0 + dt.timedelta(days=last_day, hours=23, minutes=59)
    return Parent(SimpleNamespace(trees=trees), "3", end)  # type: ignore[arg-type]


def days_of(rows: pd.DataFrame) -> list[int]:
    return sorted(set(rows["day"]))


def test_the_newest_days_only_of_what_is_newer_than_the_champion():
    train = split(20)  # days 0..19; the champion learnt days up to 9
    assert days_of(warm_rows(train, TS, parent(9), WarmStartSettings(recent_days=5))) == [
        15, 16, 17, 18, 19,
    ]  # fmt: skip
    everything = warm_rows(train, TS, parent(9), WarmStartSettings(recent_days=None))
    assert days_of(everything) == list(range(10, 20))
    # A champion newer than the recent days: its window is the bound.
    assert days_of(warm_rows(train, TS, parent(17), WarmStartSettings(recent_days=5))) == [18, 19]
    assert warm_rows(train.iloc[:0], TS, parent(9), WarmStartSettings(recent_days=5)).empty


def test_too_few_recent_rows_fall_back_to_a_retrain_from_scratch_and_say_why():
    train = split(20, per_day=100)
    cutoff = dt.date(2026, 3, 27)
    cfg = TrainSettings(min_rows=400, warm_start=WarmStartSettings(recent_days=5))
    mode, reason = plan_mode(cfg, train, TS, parent(9), cutoff, WARM_START)
    assert mode == WARM_START
    assert reason.startswith("warm_start: 500 new rows") and "recent_days" in reason
    narrow = cfg.model_copy(update={"warm_start": WarmStartSettings(recent_days=3)})
    mode, reason = plan_mode(narrow, train, TS, parent(9), cutoff, WARM_START)
    assert mode == STATELESS
    assert "only 300 training rows" in reason and "newest 3 days" in reason
    assert "train.min_rows=400" in reason
