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
    DayFailed,
    KeepGoingOption,
    ParamsOption,
    RunIdOption,
    ToOption,
    app,
    context_of,
    days_of,
    echo_error,
    expectations_app,
    fail,
    require_date_for_to,
    run_days,
    settings_of,
)
from regrow.settings import ConfigError

if TYPE_CHECKING:
    from regrow.data.ingest import IngestReport
    from regrow.settings import ValidationSettings
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
    replace: Annotated[
        bool,
        typer.Option(help="Remove an earlier simulation's days first (a simulated landing only)."),
    ] = False,
    summary_file: Annotated[
        Path | None,
        typer.Option("--summary", help="Write what was simulated (or that nothing was) as JSON."),
    ] = None,
) -> None:
    """Write simulated card transactions and late fraud labels as landing files.

    Files go to landing.path as events/YYYY-MM-DD/*.csv and labels/YYYY-MM-DD/*.csv (format
    from landing.format), with the scenario's ground truth in _scenario.json. With
    simulator.enabled false (or no simulator section) nothing is written: landing.path is
    your data. A landing that holds files the simulator did not write is never touched.
    """
    from regrow.data import simulate as sim_module

    try:
        settings = settings_of(params)
        sim = settings.simulator
        root = settings.resolve(settings.landing.path)
        if not sim.enabled:
            _write_json(summary_file, {"enabled": False})
            typer.echo(f"simulator disabled (simulator.enabled: false): {root} left as it is")
            return
        if scenario is not None:
            sim = sim.model_validate({**sim.model_dump(), "scenario": scenario})
        sim_module.check_contract(settings.dataset)
        sim_module.check_days_past(sim, sim.days if days is None else days)
        sim_module.claim_landing(root, replace=replace)
        summary = sim_module.write_landing(settings.dataset, sim, settings.landing, root, days)
    except (ConfigError, ValueError) as err:
        raise fail(str(err)) from None
    _write_json(summary_file, {
        "enabled": True, "scenario": sim.scenario, "seed": sim.seed,
        "days": [str(summary.days[0]), str(summary.days[-1])], **summary.rows,
    })  # fmt: skip
    typer.echo(
        f"simulated {len(summary.days)} day(s) ({sim.scenario}) from {summary.days[0]} to "
        f"{summary.days[-1]}: {summary.rows['events']} events, {summary.rows['labels']} labels "
        f"in {summary.root}"
    )


def _write_json(path: Path | None, content: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")


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
    keep_going: KeepGoingOption = False,
    retry_quarantine: Annotated[
        bool,
        typer.Option(
            "--retry-quarantine",
            help="Also check every quarantined label whose event was unknown again, and move "
            "those whose event has landed since to bronze.labels (alone: only that).",
        ),
    ] = False,
) -> None:
    """Ingest landing files into bronze.events, bronze.labels and bronze.quarantine.

    Each day replaces its own partitions (rerunning a day is idempotent). Rows that cannot
    be parsed or break the contract go to bronze.quarantine with a reason; each day ends
    with its quarantine reasons and counts. A day that quarantines more rows than the gate
    allows (validation.max_quarantine_fraction, validation.min_quarantined_to_block) fails:
    `regrow validate` would block it.
    """
    from regrow.data import landing
    from regrow.data.backfill import interpreted_if_small
    from regrow.data.ingest import ingest_day, release_labels

    if all_days == (date is not None) and not (retry_quarantine and date is None):
        raise fail("give either --date (and --to) or --all (or --retry-quarantine alone)")
    require_date_for_to(date, to)
    ctx = context_of(params, run_id)
    settings = ctx.settings
    if retry_quarantine and not all_days and date is None:
        days = []
    elif all_days:
        days = landing.landed_days(settings.resolve(settings.landing.path), "events")
        if not days:
            raise fail(f"no landed days under {settings.resolve(settings.landing.path)}/events")
    else:
        days = days_of(date, to)

    def run(day: dt.date) -> None:
        report = ingest_day(ctx, day)
        typer.echo(
            f"{day}: events {report.events.rows_in} in -> {report.events.bronze_rows} bronze, "
            f"{report.events.quarantined_rows} quarantined; labels {report.labels.rows_in} in -> "
            f"{report.labels.bronze_rows} bronze, {report.labels.quarantined_rows} quarantined"
        )
        _echo_released(report.released_labels, day)
        _check_quarantine(settings.validation, report)

    with interpreted_if_small(ctx, days):
        run_days(days, run, keep_going)
    if retry_quarantine:
        released = release_labels(ctx)
        _echo_released(released)
        if not released:
            typer.echo("no quarantined label has its event in bronze.events yet")


def _echo_released(released: dict[str, int], by: dt.date | None = None) -> None:
    """A line per day released into, with how its silver.labels gets them: from the labels
    of the day whose events released them (``by``), or by building that day again."""
    for day, n in released.items():
        typer.echo(
            f"  released {n} quarantined label(s) of {day} to bronze.labels (their event has "
            f"landed since): `regrow labels --date {by or day}` rebuilds silver.labels of {day}"
        )


def _check_quarantine(validation: ValidationSettings, report: IngestReport) -> None:
    """Echo a day's quarantine reasons with their counts; raise :class:`DayFailed` when the
    gate would block the day for them (the limit is the gate's own)."""
    from regrow.validation.gate import quarantine_limit

    kinds = {"events": report.events, "labels": report.labels}
    for kind, kind_report in kinds.items():
        for reason, count in kind_report.reasons.items():
            typer.echo(f"  {kind} quarantined {count:>6} x {reason}")
        other = kind_report.quarantined_rows - sum(kind_report.reasons.values())
        if other > 0:  # only the most frequent reasons are counted
            typer.echo(f"  {kind} quarantined {other:>6} x other reasons (see bronze.quarantine)")
    landed = sum(k.rows_in for k in kinds.values())
    quarantined = sum(k.quarantined_rows for k in kinds.values())
    limit = quarantine_limit(validation, landed)
    if quarantined > limit:
        raise DayFailed(
            f"{report.day}: {quarantined} of {landed} landed rows were quarantined, more than "
            f"the {limit} the gate allows (validation.max_quarantine_fraction "
            f"{validation.max_quarantine_fraction}, validation.min_quarantined_to_block "
            f"{validation.min_quarantined_to_block}): `regrow validate` would block the day; "
            "fix its landing files (the reasons above) and ingest it again"
        )


def _silver_days(
    lakehouse: Lakehouse, date: dt.datetime | None, to: dt.datetime | None, all_days: bool
) -> list[dt.date]:
    """The days a silver command builds: --date [--to], or --all (every bronze.events day)."""
    if all_days == (date is not None):
        raise fail("give either --date (and --to) or --all")
    require_date_for_to(date, to)
    if date is not None:
        return days_of(date, to)
    days = sorted(dt.date.fromisoformat(d) for d in lakehouse.partition_rows(EVENTS))
    if not days:
        raise fail(f"bronze.events under {lakehouse.root} has no day yet: run regrow ingest first")
    return days


def silver_command(name: str, help: str, stage: Callable[[], Callable], describe) -> None:
    """Register ``regrow <name>``: the daily stage's builder of days ``stage()`` (imported
    when the command runs: ``(ctx, days) -> build(day)``, which computes small days
    together) for ``--date`` [``--to``] or ``--all`` days, oldest first, echoing
    ``describe(day, report)`` for each."""

    def command(
        date: DateOption = None,
        to: ToOption = None,
        params: ParamsOption = None,
        run_id: RunIdOption = None,
        all_days: AllOption = False,
        keep_going: KeepGoingOption = False,
    ) -> None:
        from regrow.data.backfill import interpreted_if_small

        ctx = context_of(params, run_id)
        days = _silver_days(ctx.lakehouse, date, to, all_days)
        with interpreted_if_small(ctx, days):
            build = stage()(ctx, days)
            run_days(days, lambda day: typer.echo(describe(day, build(day))), keep_going)

    app.command(name, help=help)(command)


def _build_features() -> Callable:
    from regrow.data.features import features_of_days

    return features_of_days


def _build_labels() -> Callable:
    from regrow.data.labels import labels_of_days

    return labels_of_days


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
    lambda day, r: (
        f"{day}: {r.rows} label(s) -> silver.labels v{r.version}"
        + (
            f"; rebuilt {', '.join(r.rebuilt)} for the labels released into them"
            if r.rebuilt
            else ""
        )
    ),
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
    from regrow.data.trainset import build_trainset

    result = build_trainset(context_of(params), cutoff.date() if cutoff else None, output)
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
    to: ToOption = None,
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
    """Run the Great Expectations suites on a day's partitions (or a range's, day after
    day) and print a summary.

    Results go to gold.validation and Data Docs (reports_dir/data_docs). Exits 1 when a
    critical expectation fails (the day is blocked); warnings are printed, not fatal.
    """
    from regrow.data import landing
    from regrow.data.backfill import interpreted_if_small
    from regrow.validation import SUITES, ValidationError, build_docs, validate_day

    if all_days == (date is not None):
        raise fail("give either --date (and --to) or --all")
    require_date_for_to(date, to)
    blocked = []
    outcomes_by_day: dict[str, dict] = {}
    ctx = context_of(params, run_id)
    settings = ctx.settings
    days = (
        landing.landed_days(settings.resolve(settings.landing.path), "events")
        if all_days
        else days_of(date, to)
    )
    kwargs = {"tables": table} if table else {}
    # Many days: Data Docs are built once at the end, as a range backfill builds them; a
    # day's pages cost more than half its bronze validation, and the index grows with them.
    once = len(days) > 1
    with interpreted_if_small(ctx, days):
        for day in days:
            try:
                outcomes = validate_day(ctx, day, data_docs=not once, **kwargs).outcomes
            except ValidationError as err:  # one line per failed expectation, and Data Docs
                echo_error(str(err))
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
                    typer.echo(f"  warning: {warning.describe(outcome.table)}")
            if not once:
                typer.echo(f"Data Docs: {outcomes[-1].data_docs_path}")
    if once:
        typer.echo(f"Data Docs: {build_docs(settings, table or tuple(SUITES))}")
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
    from regrow.validation import write_suites

    settings = settings_of(params)
    written = write_suites(
        settings.dataset, settings.resolve(settings.validation.expectations_dir), settings.features
    )
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
    keep_going: KeepGoingOption = False,
) -> None:
    """Ingest, validate and build silver for a range of days in one Spark application
    (the regrow_ingest DAG's steps, day after day); Data Docs are built once at the end.
    A missing landing day or a reversed range fails before anything is written, and a
    blocked day stops the range; with --keep-going both are reported and the range goes on."""
    import time

    from regrow.data.backfill import BackfillBlocked
    from regrow.data.backfill import backfill as run_backfill

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
    ctx = context_of(params, run_id)
    try:
        report = run_backfill(ctx, first.date(), last.date(), progress, keep_going)
    except BackfillBlocked as err:
        typer.echo(f"{len(err.report.days)} day(s) done; Data Docs: {err.report.data_docs}")
        for day, why in err.report.failed.items():
            echo_error(f"{day}: {why}")
        if err.report.failed:
            raise fail(
                f"{len(err.report.failed)} of {total} day(s) failed: "
                f"{', '.join(err.report.failed)} (why: above)"
            ) from None
        raise fail(str(err)) from None
    typer.echo(f"{len(report.days)} day(s) in {report.seconds:.0f}s; Data Docs: {report.data_docs}")
