"""Runtime parameters: the values of the suites' ``$PARAMETER``s for the partition
being validated, so one suite file serves every partition: the partition's day
(``day_start``/``day_end``, capped at *now* so a timestamp in the future fails) and
row-count bounds from recent partitions (``row_count_min``/``max``).
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from regrow.catalog import TABLES
from regrow.validation.suites import DAY_END, DAY_START, ROW_COUNT_MAX, ROW_COUNT_MIN, SuiteError

if TYPE_CHECKING:
    from regrow.storage.lakehouse import Lakehouse

# A day outside [median / 5, median * 5] of recent days' row counts is flagged.
DEFAULT_ROW_COUNT_FACTOR = 5.0


def row_count_bounds(
    recent_counts: Sequence[int], factor: float = DEFAULT_ROW_COUNT_FACTOR
) -> tuple[int, int | None]:
    """Row-count bounds from recent partitions' counts: ``[median/factor, median*factor]``.

    With no history, at least one row and no upper bound (an empty day is still flagged).
    The median, not the mean, so one broken day in the window does not move the bounds.
    """
    counts = [c for c in recent_counts if c > 0]
    if not counts:
        return 1, None
    median = statistics.median(counts)
    return max(1, math.floor(median / factor)), math.ceil(median * factor)


def recent_row_counts(
    lakehouse: Lakehouse,
    table: str,
    day: dt.date,
    days: int = 7,
    counts: Mapping[str, int] | None = None,
) -> list[int]:
    """Row counts of ``table``'s partitions in the ``days`` before ``day``, from the Delta
    log's file statistics (no data is read); days without a partition are left out.

    Args:
        counts: the table's :func:`partition_counts`, if the caller has them already.
    """
    counts = partition_counts(lakehouse, table) if counts is None else counts
    wanted = [str(day - dt.timedelta(days=n)) for n in range(days, 0, -1)]
    return [counts[d] for d in wanted if d in counts]


def partition_counts(lakehouse: Lakehouse, table: str) -> dict[str, int]:
    """Rows per day partition of ``table`` (``{"2026-01-01": n}``), from the Delta log's
    file statistics; empty if the table does not exist."""
    return lakehouse.partition_rows(table, TABLES[table].date_column)


def partition_day(partition: Mapping[str, Any]) -> dt.date:
    """The day a ``{date_column: day}`` partition spec names."""
    days = [v for v in partition.values() if isinstance(v, dt.date | str)]
    if len(days) != 1:
        raise ValueError(f"partition {dict(partition)} must name exactly one day")
    value = days[0]
    if isinstance(value, dt.datetime):
        return value.date()
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def runtime_parameters(
    day: dt.date,
    recent_counts: Sequence[int] = (),
    now: dt.datetime | None = None,
    row_count_factor: float = DEFAULT_ROW_COUNT_FACTOR,
) -> dict[str, Any]:
    """Values of the suites' ``$PARAMETER``s for one day (UTC instants).

    ``day_end`` is the end of the day or ``now``, whichever is earlier: a timestamp after it
    is on another day or in the future.
    """
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
    low, high = row_count_bounds(recent_counts, row_count_factor)
    return {
        DAY_START: start,
        DAY_END: min(start + dt.timedelta(days=1), now),
        ROW_COUNT_MIN: low,
        ROW_COUNT_MAX: high,
    }


def _resolve(value: Any, parameters: Mapping[str, Any], where: str) -> Any:
    if isinstance(value, dict) and "$PARAMETER" in value:
        name = value["$PARAMETER"]
        if name not in parameters:
            raise SuiteError(f"{where}: no value for suite parameter {name!r}")
        return parameters[name]
    return value
