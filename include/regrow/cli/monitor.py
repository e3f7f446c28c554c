"""``regrow monitor``: drift, performance, the policy's decision and the report of scored
days — the same library calls as the ``regrow_monitor`` DAG and the DVC stage."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from regrow.catalog import PREDICTIONS
from regrow.cli.common import (
    DateOption,
    KeepGoingOption,
    ParamsOption,
    RunIdOption,
    ToOption,
    app,
    context_of,
    days_of,
    fail,
    require_date_for_to,
    run_days,
)


@app.command()
def monitor(
    date: DateOption = None,
    to: ToOption = None,
    params: ParamsOption = None,
    run_id: RunIdOption = None,
    latest: Annotated[
        bool, typer.Option("--latest", help="The newest day of gold.predictions.")
    ] = False,
    new: Annotated[
        bool, typer.Option("--new", help="Every scored day not monitored yet, oldest first.")
    ] = False,
    decide: Annotated[
        bool, typer.Option(help="Apply the retrain policy (one gold.decisions row per day).")
    ] = True,
    report: Annotated[bool, typer.Option(help="Write each day's HTML report.")] = True,
    keep_going: KeepGoingOption = False,
) -> None:
    """Monitor scored days: drift against the reference, estimated and realised
    performance (gold.monitoring), the retrain policy's decision (gold.decisions) and the
    HTML report. A rerun of a day replaces its rows and its decision."""
    from regrow.monitoring.monitor import monitor_day, report_day, unmonitored_days
    from regrow.policy.daily import decide_day

    if sum([date is not None, latest, new]) != 1:
        raise fail("give one of --date (and --to), --latest or --new")
    require_date_for_to(date, to)
    ctx = context_of(params, run_id)
    if date is not None:
        days = days_of(date, to)
    elif new:
        days = unmonitored_days(ctx)
    else:
        scored = ctx.lakehouse.partition_rows(PREDICTIONS)
        if not scored:
            raise fail(f"{PREDICTIONS} has no day yet: run regrow score first")
        days = [max(dt.date.fromisoformat(d) for d in scored)]
    if not days:
        typer.echo("nothing to monitor: every scored day has been monitored")

    def run(day: dt.date) -> None:
        result = monitor_day(ctx, day)
        flagged = [f"{r.check}:{r.column}" for r in result.drift.flagged]
        typer.echo(
            f"{day}: {len(result.drift.results)} drift checks, flagged: "
            f"{', '.join(flagged) or 'none'}"
        )
        metric = ctx.settings.evaluate.primary_metric
        for r in result.performance.results:
            if r.column == metric:
                shown = f"{r.value:.4f}" if r.value is not None else r.status
                typer.echo(f"  {r.check} {metric}: {shown}")
        if decide:
            d = decide_day(ctx, day)
            typer.echo(
                f"  decision: {d.action} ({d.trigger}), budget left {d.budget_left}: {d.reason}"
            )
        if report:
            typer.echo(f"  report: {report_day(ctx, day)}")

    run_days(days, run, keep_going)
