"""Days of a silver stage computed together: one pass over their bronze rows, then each day
written to its own partition, as a day built alone writes it.

A small day's silver costs a few Spark jobs whatever its size: a read, a window sort or a
join, a write. Over a range of small days (``regrow features --all``, a DVC stage after a
change of ``features``, a job's ``--to``) most of that is the same fixed cost paid again
for every day. A pass reads the days' bronze once, computes every day's rows in one job,
holds them (``localCheckpoint``) and writes each day's partition from them: one commit per
day as before, each a filter of rows already computed. A pass holds at most
:data:`PASS_ROWS` rows of its days; a larger day is a pass of its own, computed and written
as it always was (no rows held).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

logger = logging.getLogger(__name__)

# The rows a pass holds at most (the bronze rows of its days, from the Delta log): a
# checkpoint of this many rows fits the driver's default memory with room to spare, and
# above a few hundred thousand rows a day a pass saves nothing (its cost is per row).
PASS_ROWS = 1_000_000

Report = TypeVar("Report")


def cut_into_passes(
    days: Sequence[dt.date], rows: Callable[[dt.date], int], limit: int = PASS_ROWS
) -> list[list[dt.date]]:
    """``days`` in their order, cut into runs whose ``rows`` sum to at most ``limit``; a day
    over it alone is a run of its own."""
    passes: list[list[dt.date]] = []
    held = 0
    for day in days:
        n = rows(day)
        if passes and held + n <= limit:
            passes[-1].append(day)
            held += n
        else:
            passes.append([day])
            held = n
    return passes


def in_passes(
    passes: Sequence[Sequence[dt.date]],
    compute: Callable[[list[dt.date]], DataFrame],
    write: Callable[[DataFrame, dt.date], Report],
) -> Callable[[dt.date], Report]:
    """The function that builds one day of ``passes``: ``write(rows, day)``, where ``rows``
    are ``compute(days)`` of the day's pass.

    A pass is computed when its first day is built (so the days are built in the caller's
    order, each failing or reporting on its own), once; a pass of several days is held
    with ``localCheckpoint`` so that its days' writes read it instead of computing it
    again. A pass of several days that fails to compute is built day by day
    (``compute([day])``): the day at fault then fails alone with its own error, and the
    others are built. A day of no pass raises ``KeyError``.
    """
    pass_of = {day: tuple(days) for days in passes for day in days}
    computed: dict[tuple[dt.date, ...], DataFrame | None] = {}

    def build(day: dt.date) -> Report:
        days = pass_of[day]
        if days not in computed:
            computed.clear()  # the earlier pass's days are written: Spark may drop its rows
            computed[days] = _computed(days, compute)
        rows = computed[days]
        return write(compute([day]) if rows is None else rows, day)

    return build


def _computed(
    days: tuple[dt.date, ...], compute: Callable[[list[dt.date]], DataFrame]
) -> DataFrame | None:
    """``compute(days)``, held when ``days`` are several; None when that pass failed."""
    if len(days) == 1:
        return compute(list(days))
    try:
        rows = compute(list(days)).localCheckpoint(eager=True)
    except Exception as err:  # noqa: BLE001 - each day is computed again alone, and raises
        logger.info("%s..%s: the pass failed, its days are built one by one (%s)",
                    days[0], days[-1], str(err).splitlines()[0] if str(err) else err)  # fmt: skip
        return None
    logger.info("%s..%s: %d days computed in one pass", days[0], days[-1], len(days))
    return rows
