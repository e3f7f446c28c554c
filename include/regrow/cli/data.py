"""``regrow`` commands of the data stages: simulate, ingest, validate, features, labels,
backfill (all of them for a range), trainset, and the expectation suites."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from regrow.catalog import EVENTS
from regrow.cli.common import (
    AllOption,
    DateOption,
    ParamsOption,
    RunIdOption,
    ToOption,
    app,
    context_of,
    days_of,
    expectations_app,
    fail,
    settings_of,
)
from regrow.settings import ConfigError

if TYPE_CHECKING:
    from regrow.storage.lakehouse import Lakehouse


@app.command()
def simulate(
    params: ParamsOption = None,
    days: Annotated[
        int | None, typer.Option(help="Days to simulate (default: simulator.days).")
    ] = None,
    scenario: Annotated[
        str | None,
        typer.Option(help="Override simulator.scenario (stable, concept_drift, broken_feed ...)."),
    ] = None,
) -> None:
    """Write simulated card transactions and late fraud labels as landing files.

    Files go to landing.path as events/YYYY-MM-DD/*.csv and labels/YYYY-MM-DD/*.csv (format
    from landing.format), with the scenario's ground truth in _scenario.json.
    """
    from regrow.data import simulate as sim_module

    try:
        settings = settings_of(params)
        sim = settings.simulator
        if scenario is not None:
            sim = sim.model_validate({**sim.model_dump(), "scenario": scenario})
        sim_module.check_contract(settings.dataset)
        summary = sim_module.write_landing(
            settings.dataset, sim, settings.landing, settings.resolve(settings.landing.path), days
        )
    except (ConfigError, ValueError) as err:
        raise fail(str(err)) from None
    typer.echo(
        f"simulated {len(summary.days)} day(s) ({sim.scenario}) from {summary.days[0]} to "
        f"{summary.days[-1]}: {summary.rows['events']} events, {summary.rows['labels']} labels "
        f"in {summary.root}"
    )


@app.command()
def ingest(
    date: Annotated[
        dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Day to ingest.")
    ] = None,
    to: Annotated[
        dt.datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Last day of a range (inclusive)."),
    ] = None,
    params: ParamsOption = None,
    run_id: Annotated[str | None, typer.Option(help="Run id recorded on every row.")] = None,
    all_days: Annotated[
        bool, typer.Option("--all", help="Ingest every day that has landed event files.")
    ] = False,
) -> None:
    """Ingest landing files into bronze.events, bronze.labels and bronze.quarantine.

    Each day replaces its own partitions (rerunning a day is idempotent). Rows that cannot
    be parsed or break the contract go to bronze.quarantine with a reason.
    """
    from regrow.data import landing
    from regrow.data.ingest import IngestError, ingest_day
    from regrow.storage.lakehouse import LakehouseError

    if all_days == (date is not None):
        raise fail("give either --date (and --to) or --all")
    try:
        ctx = context_of(params, run_id)
        settings = ctx.settings
        if all_days:
            days = landing.landed_days(settings.resolve(settings.landing.path), "events")
            if not days:
                raise fail(f"no landed days under {settings.resolve(settings.landing.path)}/events")
        else:
            days = days_of(date, to)
        for day in days:
            report = ingest_day(ctx, day)
            typer.echo(
                f"{day}: events {report.events.rows_in} in -> {report.events.bronze_rows} bronze, "
                f"{report.events.quarantined_rows} quarantined; labels {report.labels.rows_in} in -> "
                f"{report.labels.bronze_rows} bronze, {report.labels.quarantined_rows} quarantined"
            )
    except (ConfigError, IngestError, LakehouseError) as err:
        raise fail(str(err)) from None


def _silver_days(
    lakehouse: Lakehouse, date: dt.datetime | None, to: dt.datetime | None, all_days: bool
) -> list[dt.date]:
    """The days a silver command builds: --date [--to], or --all (every bronze.events day)."""
    if all_days == (date is not None):
        raise fail("give either --date (and --to) or --all")
    if date is not None:
        return days_of(date, to)
    days = sorted(dt.date.fromisoformat(d) for d in lakehouse.partition_rows(EVENTS))
    if not days:
        raise fail(f"bronze.events under {lakehouse.root} has no day yet: run regrow ingest first")
    return days


def silver_command(name: str, help: str, stage: Callable[[], Callable], describe) -> None:
    """Register ``regrow <name>``: the daily stage ``stage()`` (imported when the command
    runs) for ``--date`` [``--to``] or ``--all`` days, oldest first, echoing
    ``describe(day, report)`` for each."""

    def command(
        date: DateOption = None,
        to: ToOption = None,
        params: ParamsOption = None,
        run_id: RunIdOption = None,
        all_days: AllOption = False,
    ) -> None:
        from regrow.storage.lakehouse import LakehouseError

        try:
            ctx = context_of(params, run_id)
            build = stage()
            for day in _silver_days(ctx.lakehouse, date, to, all_days):
                typer.echo(describe(day, build(ctx, day)))
        except (ConfigError, LakehouseError) as err:
            raise fail(str(err)) from None

    app.command(name, help=help)(command)


def _build_features() -> Callable:
    from regrow.data.features import build_features

    return build_features


def _build_labels() -> Callable:
    from regrow.data.labels import build_labels

    return build_labels


silver_command(
    "features",
    "Build silver.features for a day: the contract's features plus per-entity window "
    "aggregates over strictly earlier events (features section of params.yaml).\n\n"
    "A day reads its own bronze.events partition and the days its longest window reaches; "
    "one of them missing stops with its name. Each day replaces its own partition.",
    _build_features,
    lambda day, r: (
        f"{day}: {r.rows} events -> silver.features v{r.version} "
        f"(read bronze.events v{r.source_version}, {r.days_read[0]}..{day})"
    ),
)
silver_command(
    "labels",
    "Build silver.labels for a landing day: the labels that arrived that day, joined to the "
    "event they belong to (entity, event time). Maturity is decided per cut-off when a "
    "training set is built, not here.",
    _build_labels,
    lambda day, r: f"{day}: {r.rows} label(s) -> silver.labels v{r.version}",
)


@app.command()
def trainset(
    cutoff: Annotated[
        dt.datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Cut-off day, exclusive (default: split.cutoff_date, else the day after the "
            "newest features day).",
        ),
    ] = None,
    params: ParamsOption = None,
    output: Annotated[
        Path | None, typer.Option(help="Snapshot directory (default: split.output_dir).")
    ] = None,
) -> None:
    """Build the training set of a cut-off from silver: matured labels only, split by time,
    statistics fitted on train only, leakage checks; written as Parquet + manifest.json.
    """
    from regrow.data.trainset import LeakageError, TrainsetError, build_trainset
    from regrow.storage.lakehouse import LakehouseError

    try:
        result = build_trainset(context_of(params), cutoff.date() if cutoff else None, output)
    except (ConfigError, LakehouseError, TrainsetError, LeakageError) as err:
        raise fail(str(err)) from None
    m = result.manifest
    typer.echo(
        f"training set of cut-off {m['cutoff_date']} (window {m['window']['start']}.."
        f"{m['window']['end']}) -> {result.path}"
    )
    for name, split in m["splits"].items():
        typer.echo(
            f"  {name:<10} {split['rows']:>8} rows  label rate {split['label_rate']:.4f}  "
            f"{split['first_day']}..{split['last_day']}"
        )
    typer.echo(f"  {len(m['columns']['features'])} features; {m['content_hash']}")


@app.command()
def validate(
    date: Annotated[
        dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Day to validate.")
    ] = None,
    table: Annotated[
        list[str] | None,
        typer.Option(
            help="Table(s) to validate (default: bronze.events, bronze.labels, bronze.quarantine;"
            " also silver.features, silver.labels)."
        ),
    ] = None,
    params: ParamsOption = None,
    run_id: Annotated[str | None, typer.Option(help="Run id recorded with the results.")] = None,
    all_days: Annotated[
        bool, typer.Option("--all", help="Validate every day that has landed event files.")
    ] = False,
    summary: Annotated[
        Path | None,
        typer.Option(
            help="Also write each day's and table's outcome (passed, expectations, warnings) "
            "to this JSON file: the DVC stage's output.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the Great Expectations suites on one day's partitions and print a summary.

    Results go to gold.validation and Data Docs (reports_dir/data_docs). Exits 1 when a
    critical expectation fails (the day is blocked); warnings are printed, not fatal.
    """
    from regrow.data import landing
    from regrow.storage.lakehouse import LakehouseError
    from regrow.validation import SuiteError, ValidationError, validate_day

    if all_days == (date is not None):
        raise fail("give either --date or --all")
    blocked = []
    outcomes_by_day: dict[str, dict] = {}
    try:
        ctx = context_of(params, run_id)
        settings = ctx.settings
        days = (
            landing.landed_days(settings.resolve(settings.landing.path), "events")
            if all_days
            else [date.date()]
        )
        kwargs = {"tables": table} if table else {}
        for day in days:
            try:
                outcomes = validate_day(ctx, day, **kwargs).outcomes
            except ValidationError as err:
                typer.secho(str(err), fg=typer.colors.RED, err=True)
                typer.echo(f"Data Docs: {err.outcome.data_docs_path}", err=True)
                blocked.append(day)
                outcomes_by_day[str(day)] = {"blocked": True}
                continue
            outcomes_by_day[str(day)] = {
                o.table: {"passed": o.success, "expectations": len(o.results),
                          "warnings": len(o.warnings)}
                for o in outcomes
            }  # fmt: skip
            for outcome in outcomes:
                typer.echo(
                    f"{outcome.table} {day}: passed, {len(outcome.results)} expectations, "
                    f"{len(outcome.warnings)} warning(s)"
                )
                for warning in outcome.warnings:
                    typer.echo(f"  warning: {warning.describe()}")
            typer.echo(f"Data Docs: {outcomes[-1].data_docs_path}")
    except (ConfigError, SuiteError, LakehouseError) as err:
        raise fail(str(err)) from None
    if summary is not None:
        # Only outcomes, no run ids or times: the same data gives the same file, so a
        # rerun of the DVC stage does not make every later stage stale.
        summary.parent.mkdir(parents=True, exist_ok=True)
        summary.write_text(json.dumps({"days": outcomes_by_day}, indent=2, sort_keys=True) + "\n")
    if blocked:
        raise fail(f"blocked: {', '.join(map(str, blocked))}")


@expectations_app.command("generate")
def expectations_generate(params: ParamsOption = None) -> None:
    """Write every table's suite, generated from the dataset contract, as reviewable JSON.

    Rerun it after editing the `dataset` or `validation` section of params.yaml; review
    the diff, and edit the files by hand where the generated rules are not enough.
    """
    from regrow.validation import SuiteError, write_suites

    try:
        settings = settings_of(params)
        written = write_suites(
            settings.dataset,
            settings.resolve(settings.validation.expectations_dir),
            settings.validation.allowed_values,
            settings.features,
        )
    except (ConfigError, SuiteError) as err:
        raise fail(str(err)) from None
    for path in written:
        typer.echo(f"wrote {path}")


@app.command()
def backfill(
    first: Annotated[dt.datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="First day.")],
    last: Annotated[
        dt.datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="Last day (inclusive).")
    ],
    params: ParamsOption = None,
    run_id: RunIdOption = None,
) -> None:
    """Ingest, validate and build silver for a range of days in one Spark application
    (the regrow_ingest DAG's steps, day after day); Data Docs are built once at the end.
    A missing landing day or a reversed range fails before anything is written."""
    import time

    from regrow.data.backfill import BackfillBlocked, BackfillError
    from regrow.data.backfill import backfill as run_backfill
    from regrow.data.ingest import IngestError
    from regrow.storage.lakehouse import LakehouseError

    total = (last.date() - first.date()).days + 1
    started = time.monotonic()

    def progress(day: dict) -> None:
        done = len(shown) + 1
        shown.append(day)
        eta = (time.monotonic() - started) / done * (total - done)
        typer.echo(
            f"[{done:>3}/{total}] {day['day']}: {day['events']} events, {day['labels']} labels, "
            f"{day['quarantined']} quarantined in {day['seconds']:.1f}s (ETA {eta:.0f}s)"
        )

    shown: list[dict] = []
    try:
        ctx = context_of(params, run_id)
        report = run_backfill(ctx, first.date(), last.date(), progress)
    except BackfillBlocked as err:
        typer.echo(f"{len(err.report.days)} day(s) done; Data Docs: {err.report.data_docs}")
        raise fail(str(err)) from None
    except (ConfigError, LakehouseError, BackfillError, IngestError) as err:
        raise fail(str(err)) from None
    typer.echo(f"{len(report.days)} day(s) in {report.seconds:.0f}s; Data Docs: {report.data_docs}")
