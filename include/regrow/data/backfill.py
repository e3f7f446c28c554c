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
so a blocked day's next day has its bronze too, as the DAG's next run would; no later day
is touched. A day's labels are built beside its features, as the DAG's two tasks run.

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
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from regrow.catalog import SILVER_TABLES
from regrow.data import landing
from regrow.data.features import build_features
from regrow.data.ingest import IngestReport, ingest_day
from regrow.data.labels import build_labels
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


def _run_days(
    ctx: StageContext,
    days: list[dt.date],
    report: BackfillReport,
    progress: Callable[[dict[str, Any]], None] | None,
    keep_going: bool,
) -> None:
    """The range's days, one after another (the next one ingested ahead), into ``report``."""
    # The next day is ingested while this one is validated and built: its ingest needs only
    # the earlier days' bronze, and a small day's stages wait mostly on Spark's job round
    # trips, which overlap. Reads name their partitions, so neither sees the other's days.
    # Great Expectations runs in this thread only (it is not thread-safe); ingest applies
    # its row rules without it. A day's labels are built beside its features: neither
    # reads what the other writes (silver.labels joins bronze.labels to bronze.events).
    with (
        ThreadPoolExecutor(1, thread_name_prefix="ingest-ahead") as ahead,
        ThreadPoolExecutor(1, thread_name_prefix="labels-beside") as beside,
    ):
        pending = ahead.submit(_ingest_timed, ctx, days[0])
        t0 = time.perf_counter()
        for i, day in enumerate(days):
            try:
                ingested, stages = pending.result()
            except Exception as err:
                if not keep_going:
                    raise
                ingested = _skip(report, day, err)
            if i + 1 < len(days):
                pending = ahead.submit(_ingest_timed, ctx, days[i + 1])
            if ingested is None:
                t0 = time.perf_counter()
                continue
            try:
                _timed(stages, "validate_bronze", validate_day, ctx, day, data_docs=False)
                labelled = beside.submit(_timed, stages, "labels", build_labels, ctx, day)
                try:
                    _timed(stages, "features", build_features, ctx, day)
                finally:
                    wait([labelled])  # a failed features' error is the one raised
                labelled.result()
                _timed(stages, "validate_silver", validate_day, ctx, day,
                       tables=list(SILVER_TABLES), data_docs=False)  # fmt: skip
            except Exception as err:
                if keep_going:
                    _skip(report, day, err)
                    t0 = time.perf_counter()
                    continue
                if not isinstance(err, ValidationError):
                    raise
                report.blocked = f"{day}: {err}"
                if i + 1 < len(days):
                    pending.result()  # its bronze is written, as the DAG's next run would
                    report.blocked += f" (bronze of {days[i + 1]} was ingested ahead; no more)"
                logger.error("backfill stopped at %s: %s", day, err)
                break
            now = time.perf_counter()
            figures = {
                "day": str(day),
                "events": ingested.events.bronze_rows,
                "labels": ingested.labels.bronze_rows,
                "quarantined": ingested.events.quarantined_rows + ingested.labels.quarantined_rows,
                "seconds": round(now - t0, 2),  # since the day before was done
                "stages": stages,
            }
            t0 = now
            report.days.append(figures)
            if progress:
                progress(figures)


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
