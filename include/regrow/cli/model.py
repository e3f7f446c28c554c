"""``regrow`` commands of the model lifecycle: train, evaluate, retrain, promote,
rollback, models, score, predictions and lineage."""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from regrow.catalog import FEATURES
from regrow.cli.common import (
    DateOption,
    Format,
    FormatOption,
    KeepGoingOption,
    LimitOption,
    ParamsOption,
    RunIdOption,
    ToOption,
    app,
    context_of,
    days_of,
    echo_rows,
    fail,
    require_date_for_to,
    run_days,
)

if TYPE_CHECKING:
    from regrow.model.promotion import GateOutcome


class Mode(StrEnum):
    stateless = "stateless"
    warm_start = "warm_start"


TrainsetOption = Annotated[
    Path | None,
    typer.Option("--trainset", help="Training-set snapshot (default: split.output_dir).",
                 show_default=False),
]  # fmt: skip
ModeOption = Annotated[Mode | None, typer.Option(help="Override train.mode.", show_default=False)]
TriggerOption = Annotated[
    str, typer.Option(help="What caused this retrain (recorded on the model version).")
]


def _echo_gate(outcome: GateOutcome) -> None:
    verdict = "PROMOTED" if outcome.promoted else "KEPT"
    typer.echo(f"gate: {verdict} v{outcome.version}; champion is v{outcome.champion}")
    for check in outcome.checks:
        mark = "ok  " if check["passed"] else "FAIL"
        typer.echo(f"  {mark} {check['check']}: {check['detail']}")


@app.command()
def train(
    params: ParamsOption = None,
    trainset: TrainsetOption = None,
    mode: ModeOption = None,
    trigger: TriggerOption = "manual",
) -> None:
    """Train a challenger on the training-set snapshot: XGBoost, tracked in MLflow,
    registered with its lineage and the alias challenger (not promoted: see evaluate)."""
    from regrow.model.challenger import train_challenger

    ctx = context_of(params)
    c = train_challenger(ctx, trainset, trigger, mode.value if mode else None)
    t = c.training
    typer.echo(
        f"{c.registered_model} v{c.version} ({t['mode_reason']}): "
        f"{t['trees']} trees ({t['trees_added']} new) on {t['train_rows']} rows in "
        f"{t['train_seconds']:.2f} s; run {c.run_id}; alias challenger"
    )


@app.command()
def evaluate(
    params: ParamsOption = None,
    version: Annotated[
        str | None,
        typer.Option(
            help="Challenger version (default: the last regrow train's).", show_default=False
        ),
    ] = None,
    trainset: TrainsetOption = None,
    gate: Annotated[
        bool, typer.Option("--gate/--no-gate", help="Apply the gate: promote or keep.")
    ] = True,
) -> None:
    """Challenger vs champion on the backtest window and the pinned test set; writes
    metrics.json and plots/ for DVC, then (by default) gates: promote or keep."""
    from regrow.model.challenger import evaluate_challenger
    from regrow.model.promotion import decide

    ctx = context_of(params)
    report = evaluate_challenger(ctx, version, trainset)
    outcome = decide(ctx, report) if gate else None
    metric = ctx.settings.evaluate.primary_metric
    for who, which, evaluation in (
        ("challenger", report.challenger, report.challenger_evaluation),
        ("champion", report.champion, report.champion_evaluation),
    ):
        if evaluation:
            sets = ", ".join(f"{k} {v[metric]:.4f}" for k, v in evaluation.sets.items()
                             if v.get(metric) is not None)  # fmt: skip
            typer.echo(f"{who} v{which}: {metric} {sets}")
    baselines = ", ".join(f"{k} {v[metric]:.4f}" for k, v in report.baselines.items()
                          if v.get(metric) is not None)  # fmt: skip
    typer.echo(f"baselines: {metric} {baselines}")
    if outcome:
        _echo_gate(outcome)


@app.command()
def retrain(
    params: ParamsOption = None,
    trainset: TrainsetOption = None,
    mode: ModeOption = None,
    trigger: TriggerOption = "manual",
) -> None:
    """Train, evaluate and gate in one go (the regrow_retrain DAG without Airflow)."""
    from regrow.model.retrain import train_and_gate

    result = train_and_gate(context_of(params), trainset, trigger, mode.value if mode else None)
    c = result.challenger
    typer.echo(f"trained v{c.version} ({c.training['mode_reason']})")
    _echo_gate(result.outcome)


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="The version to make champion.")],
    force: Annotated[bool, typer.Option("--force", help="Required: this skips the gate.")] = False,
    reason: Annotated[str, typer.Option(help="Why (recorded in gold.decisions).")] = "",
    who: Annotated[str | None, typer.Option(help="Who decides (default: your user).")] = None,
    params: ParamsOption = None,
) -> None:
    """Make a version champion without the gate; recorded as forced, with who and why."""
    from regrow.model.promotion import force_promote

    if not force:
        raise fail("promote skips the gate: pass --force (and --reason) to do it anyway; "
                    "regrow evaluate gates a challenger")  # fmt: skip
    decision = force_promote(context_of(params, actor=who), version, reason)
    typer.echo(
        f"champion: v{decision.champion_before} -> v{decision.champion_after} "
        f"(forced by {decision.actor}: {reason})"
    )


@app.command()
def rollback(
    reason: Annotated[str, typer.Option(help="Why (recorded in gold.decisions).")] = "",
    who: Annotated[str | None, typer.Option(help="Who decides (default: your user).")] = None,
    params: ParamsOption = None,
) -> None:
    """Move champion back to the version it replaced, and record why."""
    from regrow.model.promotion import rollback as roll_back

    decision = roll_back(context_of(params, actor=who), reason)
    typer.echo(f"champion: v{decision.champion_before} -> v{decision.champion_after} ({reason})")


@app.command()
def models(params: ParamsOption = None) -> None:
    """Versions of the registered model: aliases, mode, parent, cut-off, gate outcome."""
    from regrow.model.promotion import describe_registry

    registry = context_of(params).registry
    rows = describe_registry(registry)
    if not rows:
        typer.echo(f"{registry.name} has no version yet (regrow train)")
        return
    typer.echo(f"{registry.name} at {registry.uri}")
    header = ["version", "aliases", "mode", "parent", "cutoff", "gate", "trigger"]
    typer.echo("  ".join(f"{h:<11}" for h in header))
    for row in rows:
        typer.echo("  ".join(f"{str(row[h] or ''):<11}" for h in header))


class Alias(StrEnum):
    champion = "champion"
    shadow = "shadow"
    all = "all"


@app.command()
def score(
    date: DateOption = None,
    to: ToOption = None,
    params: ParamsOption = None,
    run_id: RunIdOption = None,
    all_days: Annotated[
        bool, typer.Option("--all", help="Every day that silver.features has, oldest first.")
    ] = False,
    latest: Annotated[
        bool, typer.Option("--latest", help="The newest day of silver.features.")
    ] = False,
    keep_going: KeepGoingOption = False,
) -> None:
    """Score a day of silver.features into gold.predictions: the champion decides, the
    challenger (if any) scores in shadow. Replaces the day's partition, then runs the
    gold.predictions suite on it.

    Rescoring past days overwrites what the models of the time predicted: score new days.
    """
    from regrow.model.scoring import score_day

    if sum([date is not None, all_days, latest]) != 1:
        raise fail("give one of --date (and --to), --all or --latest")
    require_date_for_to(date, to)
    ctx = context_of(params, run_id)
    lakehouse = ctx.lakehouse
    if date is not None:
        days = days_of(date, to)
    else:
        days = sorted(dt.date.fromisoformat(d) for d in lakehouse.partition_rows(FEATURES))
        if not days:
            raise fail(f"{FEATURES} has no day yet: run regrow features first")
        days = days[-1:] if latest else days

    def run(day: dt.date) -> None:
        r = score_day(ctx, day)
        models = ", ".join(f"{alias} v{v}" for alias, v in r.models.items())
        typer.echo(
            f"{day}: {r.events} events scored by {models}; {r.flagged} flagged "
            f"(score >= {r.threshold}) -> gold.predictions v{r.version}"
        )

    run_days(days, run, keep_going)


@app.command()
def predictions(
    date: Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="Day to read.")],
    params: ParamsOption = None,
    top: Annotated[
        int | None, typer.Option(min=1, help="Only the N highest scores.", show_default=False)
    ] = None,
    alias: Annotated[
        Alias, typer.Option(help="champion (the decisions), shadow (the challenger), or all.")
    ] = Alias.champion,
    format: FormatOption = Format.table,
    limit: LimitOption = 50,
) -> None:
    """Print a day's predictions from gold.predictions, highest score first."""
    from regrow.model.scoring import read_predictions

    rows = read_predictions(
        context_of(params).lakehouse, date.date(), None if alias is Alias.all else alias.value,
        top,
    )  # fmt: skip
    echo_rows(rows, format, limit)


@app.command()
def lineage(
    entity: Annotated[
        str, typer.Option(help="Entity id (dataset.entity_id; the event id if it is null).")
    ],
    date: Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="Day of the events.")],
    params: ParamsOption = None,
    format: Annotated[
        Format, typer.Option("--format", "-f", help="table (readable lines) or json.")
    ] = Format.table,
) -> None:
    """Trace an entity's predictions of a day: prediction row -> model version -> its
    parents (warm starts) -> training snapshot (DVC hash, window, Delta versions) -> git
    commit. Reads two Delta tables; no Spark, no MLflow.
    """
    from regrow.model import lineage as lineage_

    ctx = context_of(params)
    settings = ctx.settings
    found = lineage_.lineage(ctx.lakehouse, settings.dataset, entity, date.date())
    if format is Format.json:
        typer.echo(json.dumps(found.as_dict(), indent=2, default=str))
    else:
        typer.echo("\n".join(lineage_.describe(found, settings.dataset)))
