"""``regrow replay``: a history replayed under several retraining policies, and the
scoreboard of quality against training compute."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from regrow.cli.common import ParamsOption, RunIdOption, app, context_of


@app.command()
def replay(
    days: Annotated[int, typer.Option(help="Days of history to replay (the warm-up included).")],
    policy: Annotated[
        list[str] | None,
        typer.Option(
            help="A policy to replay (repeat it, or separate with commas): never, daily_full, "
            "weekly_full, drift, performance, default."
        ),
    ] = None,
    scenario: Annotated[
        str | None,
        typer.Option(help="A simulator scenario (stable, covariate_shift, concept_drift, ...)."),
    ] = None,
    landing: Annotated[
        Path | None,
        typer.Option(
            help="A directory of your historical files (events/YYYY-MM-DD/, labels/...), read "
            "under the dataset contract of params.yaml; never written to."
        ),
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option(
            help="Where the replay keeps its landing, lakehouse and reports "
            "(default: data/replay/<scenario or landing name>)."
        ),  # fmt: skip
    ] = None,
    warmup_days: Annotated[
        int | None,
        typer.Option(
            help="Days before the first model's cut-off (default: the label window "
            "+ the days a time split needs)."
        ),  # fmt: skip
    ] = None,
    workers: Annotated[int, typer.Option(help="Policies replayed at once (threads).")] = 1,
    freshness: Annotated[
        bool,
        typer.Option(
            "--freshness",
            help="Also score each day with the models trained k days before it, for each k "
            "of replay.freshness_days in params.yaml: quality against staleness.",
        ),
    ] = False,
    params: ParamsOption = None,
    run_id: RunIdOption = None,
) -> None:
    """Replay history under retraining policies: the data stages once for the range, then
    day by day each policy scores with its champion, monitors, decides and retrains, seeing
    only the labels matured by that day. Writes gold.replay, the scoreboard page and an
    MLflow run per replay (a child per policy), and prints the scoreboard. With
    --freshness, also the value of freshness: each day scored by models k days stale."""
    from regrow.replay.run import check_choices
    from regrow.replay.run import replay as run_replay
    from regrow.replay.scoreboard import freshness_table, table_text

    policies = [p.strip() for value in policy or [] for p in value.split(",") if p.strip()]
    check_choices(policies, scenario, freshness)
    ctx = context_of(params, run_id)
    source = scenario or (landing.name if landing else "replay")
    where = workdir or Path(ctx.settings.resolve("data/replay")) / source
    report = run_replay(
        ctx, policies, days, scenario=scenario, workdir=where,
        landing=landing.resolve() if landing else None,  # as typed: from here, not params.yaml
        warmup_days=warmup_days, workers=workers, freshness=freshness, progress=typer.echo,
    )  # fmt: skip
    if report.scoreboard:
        _print_table(table_text(report.scoreboard))
    if report.freshness:
        typer.echo("the value of freshness (each day scored by a model k days stale):")
        _print_table(freshness_table(report.freshness))
    typer.echo(
        f"replay {report.replay_id}: {report.first}..{report.last}, scored from "
        f"{report.scored_from}; gold.replay v{report.table_version}; MLflow run "
        f"{report.mlflow_run_id}"
    )
    took = ", ".join(f"{k.replace('_', ' ')} {v:.0f} s" for k, v in report.seconds.items())
    typer.echo(f"took: {took}")
    typer.echo(f"scoreboard: {report.page}")


def _print_table(cells: list[list[str]]) -> None:
    """Text cells as aligned columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for row in cells:
        typer.echo("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                             enumerate(zip(row, widths, strict=True))))  # fmt: skip
