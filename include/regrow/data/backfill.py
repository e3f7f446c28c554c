"""A range of days in one Spark application: ingest → validate bronze → features → labels
→ validate silver, day after day, exactly as the ``regrow_ingest`` DAG runs one day.

A year of history is one run, not 365: the JVM starts once, and Great Expectations renders
its Data Docs once at the end instead of after every suite. Each day replaces its own
partitions, so the tables equal a day-by-day run's (a test compares them).

The whole range is checked before anything is written: a range that ends before it
starts, or a day with no landing file of events, fails at once naming the days. A day
blocked by its validation stops the range there (the next days' features would read it):
the days before it are complete, and :class:`BackfillBlocked` names the day and why. The
next day's ingest runs while a day is validated and built (it needs only earlier bronze),
so a blocked day's next day has its bronze too, as the DAG's next run would. A day's labels
are built beside its features, as the DAG's two tasks run. Small days go a few at a time
(:data:`SILVER_BLOCK_DAYS`): their bronze is ingested and validated day by day, then their
silver is computed together (:mod:`regrow.data.passes`) and written and validated day by
day, in order, while the next block's days are ingested. A day that stops the range stops
it after the block's days before it are complete; no silver of a later day is written,
and the later days whose bronze was written ahead (a block's at most) are named.

Days smaller than ``spark.interpreted_below_mib`` of landed events (the median of the
first, middle and last day) run with Spark's expressions interpreted instead of compiled,
which costs a small day less (:func:`interpreted_if_small`; the CLI's day loops and the
daily jobs use it too).

With ``keep_going`` a day that fails (no landing files, an ingest or storage error, a
blocked validation) is recorded in the report's ``failed`` with why, and the range goes on
with the next day; :class:`BackfillBlocked` at the end names every failed day. A later day
whose features reach back to a failed day then fails too, naming the missing partition.
"""

from __future__ import annotations

import datetime as dt
import logging
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from regrow.catalog import SILVER_TABLES
from regrow.data import landing
from regrow.data.features import features_of_days
from regrow.data.ingest import IngestReport, ingest_day
from regrow.data.labels import labels_of_days
from regrow.storage.session import interpreted
from regrow.validation import ValidationError, build_docs, validate_day

if TYPE_CHECKING:
    from regrow.stage import StageContext

logger = logging.getLogger(__name__)


class BackfillError(ValueError):
    """A range that cannot run: it ends before it starts, or days have no landing files."""


class BackfillBlocked(BackfillError):
    """A day's validation blocked the range; ``report`` has the days done before it."""

    def __init__(self, report: BackfillReport) -> None:
        if report.failed:
            super().__init__(
                f"{len(report.failed)} day(s) of {report.first}..{report.last} failed: "
                + "; ".join(f"{day} ({why})" for day, why in report.failed.items())
            )
        else:
            super().__init__(f"backfill stopped at {report.blocked}")
        self.report = report


@dataclass
class BackfillReport:
    first: str
    last: str
    # per day: rows, seconds, and seconds per stage
    days: list[dict[str, Any]] = field(default_factory=list)
    blocked: str | None = None  # the day a critical expectation stopped, and why
    failed: dict[str, str] = field(default_factory=dict)  # with keep_going: day -> why
    data_docs: str | None = None
    seconds: float = 0.0
    interpreted: bool = False  # Spark's expressions interpreted, not compiled (small days)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def range_days(first: dt.date, last: dt.date) -> list[dt.date]:
    if last < first:
        raise BackfillError(f"the range ends ({last}) before it starts ({first})")
    return [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]


def unlanded_days(ctx: StageContext, days: list[dt.date]) -> list[dt.date]:
    """The days of ``days`` with no landing file of events."""
    settings = ctx.settings
    root = settings.resolve(settings.landing.path)
    return [d for d in days if not landing.find_files(root, settings.landing, "events", d)]


def median_day_mib(ctx: StageContext, days: Sequence[dt.date]) -> float:
    """The median size of a day's landed event files, over the range's first, middle and
    last day (a sample: listing a year of days on S3 costs more than it tells)."""
    settings = ctx.settings
    root = settings.resolve(settings.landing.path)
    sample = sorted({days[0], days[len(days) // 2], days[-1]})
    sizes = [landing.landed_bytes(root, settings.landing, "events", d) for d in sample]
    return statistics.median(sizes) / 2**20


@contextmanager
def interpreted_if_small(ctx: StageContext, days: Sequence[dt.date]) -> Iterator[bool]:
    """Run the block with Spark's expressions interpreted if ``days`` are small (below
    ``spark.interpreted_below_mib`` of landed events, by :func:`median_day_mib`), else
    compiled as ever; yields which. Days with no landing files left count as large: their
    size is unknown. So does a landing that cannot be listed: the stages after ingest do not
    read it, and a probe for speed must not fail them."""
    limit = ctx.settings.spark.interpreted_below_mib
    try:
        day_mib = median_day_mib(ctx, days) if days and limit > 0 else 0.0
    except Exception as err:  # noqa: BLE001 - the stage itself reports what it cannot reach
        logger.info("the landed days' size is unknown (%s): Spark's expressions compiled", err)
        day_mib = 0.0
    small = 0 < day_mib < limit
    logger.info(
        "%s..%s: days of %.2f MiB of events, Spark's expressions %s "
        "(spark.interpreted_below_mib %s)",
        days[0] if days else None, days[-1] if days else None, day_mib,
        "interpreted" if small else "compiled", limit,
    )  # fmt: skip
    with interpreted(ctx.spark, ctx.settings.spark) if small else nullcontext():
        yield small


def check_landed(ctx: StageContext, days: list[dt.date]) -> None:
    """Every day of the range has landed events (labels may be absent: a quiet day)."""
    settings = ctx.settings
    root = settings.resolve(settings.landing.path)
    missing = unlanded_days(ctx, days)
    if missing:
        shown = ", ".join(str(d) for d in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise BackfillError(
            f"no landing files of events for {shown}{more} "
            f"({landing.day_pattern(root, settings.landing, 'events', missing[0])}): nothing "
            f"was written. Land them, or backfill the days around them"
        )


def backfill(
    ctx: StageContext,
    first: dt.date,
    last: dt.date,
    progress: Callable[[dict[str, Any]], None] | None = None,
    keep_going: bool = False,
) -> BackfillReport:
    """Ingest, validate and build silver for ``first``..``last`` in this Spark session.

    Args:
        progress: called with each day's figures as it completes (the CLI prints a line).
        keep_going: go on past a day that fails, recording it in ``failed``.

    Raises:
        BackfillError: the range is empty or (without ``keep_going``) a day has no landing
            files (nothing written).
        BackfillBlocked: a day failed a critical expectation (the days before it are done),
            or with ``keep_going``, some days failed (the others are done).
    """
    days = range_days(first, last)
    report = BackfillReport(str(first), str(last))
    if keep_going:
        for day in unlanded_days(ctx, days):
            report.failed[str(day)] = f"no landing files of events for {day}"
        days = [d for d in days if str(d) not in report.failed]
    else:
        check_landed(ctx, days)
    started = time.perf_counter()
    if not days:
        raise BackfillBlocked(report)
    with interpreted_if_small(ctx, days) as small:
        report.interpreted = small
        _run_days(ctx, days, report, progress, keep_going)
    report.data_docs = build_docs(ctx.settings)
    report.seconds = round(time.perf_counter() - started, 1)
    if report.blocked or report.failed:
        raise BackfillBlocked(report)
    return report


# A range's small days are ingested and their bronze validated a few at a time, then their
# silver is built together (one pass: :mod:`regrow.data.passes`) and validated day by day,
# while the next block's days are ingested. At most this many days, and fewer once they
# hold SILVER_BLOCK_ROWS events: a block's progress lines come together at its end (a
# block of 2,000-event days: about 20 s), and a large day gains nothing from a pass (its
# cost is per row), so it is a block of its own, with one day ingested ahead.
SILVER_BLOCK_DAYS = 7
SILVER_BLOCK_ROWS = 100_000


@dataclass
class _Stop:
    """Why a range stops after the block it is in: an error to raise, or the day that
    blocked it and why."""

    error: Exception | None = None
    day: dt.date | None = None
    why: str = ""


class _IngestAhead:
    """The range's ingests in order, on one thread, as many days ahead of the day being
    validated as a block holds (one for days too large to come in blocks)."""

    def __init__(self, pool: ThreadPoolExecutor, ctx: StageContext, days: list[dt.date]):
        self.pool, self.ctx, self.days = pool, ctx, days
        self.futures: dict[int, Future] = {}
        self.submitted = 0  # the days before this index are submitted
        self.depth = 1

    def _submit_through(self, last: int) -> None:
        while self.submitted <= min(last, len(self.days) - 1):
            day = self.days[self.submitted]
            self.futures[self.submitted] = self.pool.submit(_ingest_timed, self.ctx, day)
            self.submitted += 1

    def take(self, i: int) -> tuple[IngestReport, dict[str, float]]:
        """Day ``i``'s ingest (raising its error), once the days after it are submitted."""
        self._submit_through(i + self.depth)
        ingested, stages = self.futures.pop(i).result()
        small = ingested.events.rows_in * SILVER_BLOCK_DAYS <= SILVER_BLOCK_ROWS
        self.depth = SILVER_BLOCK_DAYS if small else 1
        return ingested, stages

    def stop(self) -> list[dt.date]:
        """Cancel the ingests not started, wait for the one running; returns the days
        whose bronze was written ahead."""
        written = []
        for i, future in sorted(self.futures.items()):
            if future.cancel():
                continue
            try:
                future.result()
            except Exception:  # noqa: BLE001, S112 - a failed day ahead is not named as ingested
                continue
            written.append(self.days[i])
        self.futures.clear()
        return written


def _run_days(
    ctx: StageContext,
    days: list[dt.date],
    report: BackfillReport,
    progress: Callable[[dict[str, Any]], None] | None,
    keep_going: bool,
) -> None:
    """The range's days in order, in blocks (:data:`SILVER_BLOCK_DAYS`), into ``report``.

    The next days are ingested while a day is validated and built (:class:`_IngestAhead`):
    a day's ingest needs only the earlier days' bronze, and a small day's stages wait
    mostly on Spark's job round trips, which overlap. Reads name their partitions (and
    silver reads the bronze version it started from), so neither sees the other's days.
    Great Expectations runs in this thread only (it is not thread-safe); ingest applies
    its row rules without it. A day's labels are built beside its features: neither reads
    what the other writes. A day that stops the range stops it where the day-by-day run
    stops: the block's days before it are built and validated first, no silver of a later
    day is written, and the ingests not started yet are cancelled.
    """
    with (
        ThreadPoolExecutor(1, thread_name_prefix="ingest-ahead") as pool,
        ThreadPoolExecutor(1, thread_name_prefix="labels-beside") as beside,
    ):
        ahead = _IngestAhead(pool, ctx, days)
        clock = [time.perf_counter()]
        i = 0
        while i < len(days):
            try:
                # The first block is the first day alone: its line comes as soon as it is
                # done (with Spark's and GX's warm-up), not after a block of days.
                size = 1 if i == 0 else SILVER_BLOCK_DAYS
                ready, stop, i = _bronze_block(ctx, days, i, size, ahead, report, keep_going)
                silver_stop = _silver_block(ctx, ready, beside, report, progress, keep_going, clock)
            except BaseException:
                ahead.stop()
                raise
            stop = silver_stop or stop
            if stop:
                written = ahead.stop()
                if stop.error:
                    raise stop.error
                _stop_at(stop, [d for d, _, _ in ready] + written, report)
                return


def _stop_at(stop: _Stop, ingested: list[dt.date], report: BackfillReport) -> None:
    """Record the day that stopped the range and why, and the later days of ``ingested``
    whose bronze was written all the same, as the DAG's next runs would have written it."""
    blocked = f"{stop.day}: {stop.why}"
    later = sorted(str(d) for d in set(ingested) if d > stop.day)
    if later:
        blocked += f" (bronze of {', '.join(later)} was ingested ahead; no more)"
    report.blocked = blocked
    logger.error("backfill stopped at %s", blocked)


def _bronze_block(
    ctx: StageContext,
    days: list[dt.date],
    i: int,
    size: int,
    ahead: _IngestAhead,
    report: BackfillReport,
    keep_going: bool,
) -> tuple[list[tuple[dt.date, IngestReport, dict[str, float]]], _Stop | None, int]:
    """Take the ingest and validate the bronze of the days from ``days[i]`` on, one by
    one, until a block of ``size`` days (or of :data:`SILVER_BLOCK_ROWS` events) is ready
    or a day stops the range; returns the days ready for silver (with their ingest report
    and stage seconds), why the range stops (None: it goes on), and the next day's index."""
    ready: list[tuple[dt.date, IngestReport, dict[str, float]]] = []
    events = 0
    while i < len(days) and len(ready) < size and events < SILVER_BLOCK_ROWS:
        day = days[i]
        i += 1
        try:
            ingested, stages = ahead.take(i - 1)
        except Exception as err:  # noqa: BLE001 - returned, raised once the block is done
            if not keep_going:
                return ready, _Stop(error=err), i
            _skip(report, day, err)
            continue
        try:
            _timed(stages, "validate_bronze", validate_day, ctx, day, data_docs=False)
        except Exception as err:  # noqa: BLE001 - returned, raised once the block is done
            if keep_going:
                _skip(report, day, err)
                continue
            if not isinstance(err, ValidationError):
                return ready, _Stop(error=err), i
            return ready, _Stop(day=day, why=str(err)), i
        ready.append((day, ingested, stages))
        events += ingested.events.bronze_rows
    return ready, None, i


def _silver_block(
    ctx: StageContext,
    ready: list[tuple[dt.date, IngestReport, dict[str, float]]],
    beside: ThreadPoolExecutor,
    report: BackfillReport,
    progress: Callable[[dict[str, Any]], None] | None,
    keep_going: bool,
    clock: list[float],
) -> _Stop | None:
    """Build and validate the silver of the ``ready`` days, in order: their features and
    labels computed together (:func:`features_of_days`, :func:`labels_of_days`), each day
    written and validated before the next; each day done is added to ``report`` and
    passed to ``progress`` with its seconds since the previous one (``clock``)."""
    if not ready:
        return None
    days = [day for day, _, _ in ready]
    features, labels = features_of_days(ctx, days), labels_of_days(ctx, days)
    for day, ingested, stages in ready:
        try:
            labelled = beside.submit(_timed, stages, "labels", labels, day)
            try:
                _timed(stages, "features", features, day)
            finally:
                wait([labelled])  # a failed features' error is the one raised
            labelled.result()
            _timed(stages, "validate_silver", validate_day, ctx, day,
                   tables=list(SILVER_TABLES), data_docs=False)  # fmt: skip
        except Exception as err:  # noqa: BLE001 - returned, raised once the block is done
            if keep_going:
                _skip(report, day, err)
                continue
            if not isinstance(err, ValidationError):
                return _Stop(error=err)
            return _Stop(day=day, why=str(err))
        now = time.perf_counter()
        figures = {
            "day": str(day),
            "events": ingested.events.bronze_rows,
            "labels": ingested.labels.bronze_rows,
            "quarantined": ingested.events.quarantined_rows + ingested.labels.quarantined_rows,
            "seconds": round(now - clock[0], 2),  # since the day before was done
            "stages": stages,
        }
        clock[0] = now
        report.days.append(figures)
        if progress:
            progress(figures)
    return None


def _skip(report: BackfillReport, day: dt.date, err: Exception) -> None:
    """Record why ``day`` failed (``keep_going``): its message on one line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    report.failed[str(day)] = "; ".join(lines) or type(err).__name__
    logger.error("backfill: %s failed, going on: %s", day, err)


def _timed(stages: dict[str, float], name: str, stage: Callable[..., Any], *args, **kwargs) -> Any:
    """``stage(*args, **kwargs)``, its seconds recorded in ``stages[name]``."""
    started = time.perf_counter()
    result = stage(*args, **kwargs)
    stages[name] = round(time.perf_counter() - started, 2)
    return result


def _ingest_timed(ctx: StageContext, day: dt.date) -> tuple[IngestReport, dict[str, float]]:
    stages: dict[str, float] = {}
    return _timed(stages, "ingest", ingest_day, ctx, day), stages
