"""The ``regrow`` command line: the same library calls as the DAGs and DVC stages."""

from __future__ import annotations

import datetime as dt
import json
import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from regrow.settings import ConfigError, Settings, find_params, load_settings

app = typer.Typer(
    help="regrow: a batch ML system that keeps a model fresh by itself.\n\n"
    "Every command reads params.yaml (--params, else $REGROW_PARAMS, else ./params.yaml).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
expectations_app = typer.Typer(
    help="Great Expectations suites kept in git (validation.expectations_dir).",
    no_args_is_help=True,
)
app.add_typer(expectations_app, name="expectations")
dags_app = typer.Typer(
    help="Run regrow's Airflow DAGs locally (SQLite, no services).", no_args_is_help=True
)
app.add_typer(dags_app, name="dags")

ParamsOption = Annotated[
    Path | None, typer.Option("--params", help="params.yaml to use.", show_default=False)
]


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _settings(params: Path | None) -> Settings:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("py4j", "botocore", "urllib3", "s3fs", "fsspec", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return load_settings(params)


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def _days(date: dt.datetime, to: dt.datetime | None) -> list[dt.date]:
    first, last = date.date(), (to or date).date()
    if last < first:
        raise _fail(f"--to {last} is before --date {first}")
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _lakehouse(settings: Settings):
    from regrow.storage.lakehouse import Lakehouse

    return Lakehouse(settings.lakehouse, settings.resolve(settings.lakehouse.root))


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
        settings = _settings(params)
        sim = settings.simulator
        if scenario is not None:
            sim = sim.model_validate({**sim.model_dump(), "scenario": scenario})
        sim_module.check_contract(settings.dataset)
        summary = sim_module.write_landing(
            settings.dataset, sim, settings.landing, settings.resolve(settings.landing.path), days
        )
    except (ConfigError, ValueError) as err:
        raise _fail(str(err)) from None
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
    from regrow.orchestration.spark import get_spark
    from regrow.storage.lakehouse import LakehouseError

    if all_days == (date is not None):
        raise _fail("give either --date (and --to) or --all")
    try:
        settings = _settings(params)
        if all_days:
            days = landing.landed_days(settings.resolve(settings.landing.path), "events")
            if not days:
                raise _fail(
                    f"no landed days under {settings.resolve(settings.landing.path)}/events"
                )
        else:
            days = _days(date, to)
        spark = get_spark(settings.spark)
        lakehouse = _lakehouse(settings)
        for day in days:
            report = ingest_day(spark, settings, day, run_id=run_id, lakehouse=lakehouse)
            typer.echo(
                f"{day}: events {report.events.rows_in} in -> {report.events.bronze_rows} bronze, "
                f"{report.events.quarantined_rows} quarantined; labels {report.labels.rows_in} in -> "
                f"{report.labels.bronze_rows} bronze, {report.labels.quarantined_rows} quarantined"
            )
    except (ConfigError, IngestError, LakehouseError) as err:
        raise _fail(str(err)) from None


def _silver_days(
    settings: Settings, lakehouse, date: dt.datetime | None, to: dt.datetime | None, all_days: bool
) -> list[dt.date]:
    """The days a silver command builds: --date [--to], or --all (every bronze.events day)."""
    from regrow.catalog import EVENTS

    if all_days == (date is not None):
        raise _fail("give either --date (and --to) or --all")
    if date is not None:
        return _days(date, to)
    days = sorted(dt.date.fromisoformat(d) for d in lakehouse.partition_rows(EVENTS))
    if not days:
        raise _fail(f"bronze.events under {lakehouse.root} has no day yet: run regrow ingest first")
    return days


DateOption = Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Day to build.")]
ToOption = Annotated[
    dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Last day of a range (inclusive).")
]
AllOption = Annotated[
    bool, typer.Option("--all", help="Every day that bronze.events has, oldest first.")
]
RunIdOption = Annotated[str | None, typer.Option(help="Run id recorded on every row.")]


def _build_silver(
    build, describe, params: Path | None, date, to, all_days: bool, run_id: str | None
) -> None:
    """Run ``build(spark, settings, day, run_id, lakehouse)`` for each chosen day, oldest
    first, and echo ``describe(day, report)``."""
    from regrow.orchestration.spark import get_spark
    from regrow.storage.lakehouse import LakehouseError

    try:
        settings = _settings(params)
        lakehouse = _lakehouse(settings)
        days = _silver_days(settings, lakehouse, date, to, all_days)
        spark = get_spark(settings.spark)
        run_id = run_id or _manual_run_id()
        for day in days:
            typer.echo(describe(day, build(spark, settings, day, run_id, lakehouse)))
    except (ConfigError, LakehouseError) as err:
        raise _fail(str(err)) from None


@app.command()
def features(
    date: DateOption = None,
    to: ToOption = None,
    params: ParamsOption = None,
    run_id: RunIdOption = None,
    all_days: AllOption = False,
) -> None:
    """Build silver.features for a day: the contract's features plus per-entity window
    aggregates over strictly earlier events (features section of params.yaml).

    A day reads its own bronze.events partition and the days its longest window reaches;
    one of them missing stops with its name. Each day replaces its own partition.
    """
    from regrow.data.features import build_features

    _build_silver(
        build_features,
        lambda day, r: (
            f"{day}: {r.rows} events -> silver.features v{r.version} "
            f"(read bronze.events v{r.source_version}, {r.days_read[0]}..{day})"
        ),
        params, date, to, all_days, run_id,
    )  # fmt: skip


@app.command()
def labels(
    date: DateOption = None,
    to: ToOption = None,
    params: ParamsOption = None,
    run_id: RunIdOption = None,
    all_days: AllOption = False,
) -> None:
    """Build silver.labels for a landing day: the labels that arrived that day, joined to
    the event they belong to (entity, event time). Maturity is decided per cut-off when a
    training set is built, not here.
    """
    from regrow.data.labels import build_labels

    _build_silver(
        build_labels,
        lambda day, r: f"{day}: {r.rows} label(s) -> silver.labels v{r.version}",
        params, date, to, all_days, run_id,
    )  # fmt: skip


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
    from regrow.orchestration.spark import get_spark
    from regrow.storage.lakehouse import LakehouseError

    try:
        settings = _settings(params)
        result = build_trainset(
            get_spark(settings.spark),
            settings,
            _lakehouse(settings),
            cutoff.date() if cutoff else None,
            output,
        )
    except (ConfigError, LakehouseError, TrainsetError, LeakageError) as err:
        raise _fail(str(err)) from None
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


class Mode(StrEnum):
    stateless = "stateless"
    warm_start = "warm_start"


TrainsetOption = Annotated[
    Path | None,
    typer.Option("--trainset", help="Training-set snapshot (default: split.output_dir).",
                 show_default=False),
]  # fmt: skip
ModeOption = Annotated[
    Mode | None, typer.Option(help="Override train.mode.", show_default=False)
]
TriggerOption = Annotated[
    str, typer.Option(help="What caused this retrain (recorded on the model version).")
]


def _model_errors() -> tuple[type[Exception], ...]:
    from regrow.data.trainset import TrainsetError
    from regrow.model.registry import RegistryError
    from regrow.model.retrain import PromotionError
    from regrow.model.training import TrainingError
    from regrow.storage.lakehouse import LakehouseError

    return (ConfigError, LakehouseError, RegistryError, PromotionError, TrainsetError,
            TrainingError)  # fmt: skip


def _echo_gate(outcome: dict) -> None:
    verdict = "PROMOTED" if outcome["promoted"] else "KEPT"
    typer.echo(f"gate: {verdict} v{outcome['version']}; champion is v{outcome['champion']}")
    for check in outcome["checks"]:
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
    from regrow.model.retrain import train_challenger

    try:
        settings = _settings(params)
        facts = train_challenger(settings, trainset, trigger, mode.value if mode else None)
    except _model_errors() as err:
        raise _fail(str(err)) from None
    typer.echo(
        f"{facts['registered_model']} v{facts['version']} ({facts['mode_reason']}): "
        f"{facts['trees']} trees ({facts['trees_added']} new) on {facts['train_rows']} rows in "
        f"{facts['train_seconds']:.2f} s; run {facts['run_id']}; alias challenger"
    )


@app.command()
def evaluate(
    params: ParamsOption = None,
    version: Annotated[
        str | None,
        typer.Option(help="Challenger version (default: the last regrow train's).",
                     show_default=False),
    ] = None,
    trainset: TrainsetOption = None,
    gate: Annotated[
        bool, typer.Option("--gate/--no-gate", help="Apply the gate: promote or keep.")
    ] = True,
) -> None:
    """Challenger vs champion on the backtest window and the pinned test set; writes
    metrics.json and plots/ for DVC, then (by default) gates: promote or keep."""
    from regrow.model.retrain import decide, evaluate_challenger

    try:
        settings = _settings(params)
        report = evaluate_challenger(settings, version, trainset)
        outcome = decide(settings, report, _lakehouse(settings)) if gate else None
    except _model_errors() as err:
        raise _fail(str(err)) from None
    metric = settings.evaluate.primary_metric
    for who in ("challenger", "champion"):
        evaluation = report["evaluation"][who]
        if evaluation:
            sets = ", ".join(f"{k} {v[metric]:.4f}" for k, v in evaluation["sets"].items()
                             if v.get(metric) is not None)  # fmt: skip
            typer.echo(f"{who} v{report[who]}: {metric} {sets}")
    baselines = ", ".join(f"{k} {v[metric]:.4f}" for k, v in report["baselines"].items()
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

    try:
        settings = _settings(params)
        facts, _, outcome = train_and_gate(
            settings, _lakehouse(settings), trainset, trigger, mode.value if mode else None
        )
    except _model_errors() as err:
        raise _fail(str(err)) from None
    typer.echo(f"trained v{facts['version']} ({facts['mode_reason']})")
    _echo_gate(outcome)


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="The version to make champion.")],
    force: Annotated[
        bool, typer.Option("--force", help="Required: this skips the gate.")
    ] = False,
    reason: Annotated[str, typer.Option(help="Why (recorded in gold.decisions).")] = "",
    who: Annotated[
        str | None, typer.Option(help="Who decides (default: $REGROW_ACTOR, else your user).")
    ] = None,
    params: ParamsOption = None,
) -> None:
    """Make a version champion without the gate; recorded as forced, with who and why."""
    from regrow.model.retrain import force_promote

    if not force:
        raise _fail("promote skips the gate: pass --force (and --reason) to do it anyway; "
                    "regrow evaluate gates a challenger")  # fmt: skip
    try:
        settings = _settings(params)
        decision = force_promote(settings, version, reason, _lakehouse(settings), who=who)
    except _model_errors() as err:
        raise _fail(str(err)) from None
    typer.echo(
        f"champion: v{decision.champion_before} -> v{decision.champion_after} "
        f"(forced by {decision.actor}: {reason})"
    )


@app.command()
def rollback(
    reason: Annotated[str, typer.Option(help="Why (recorded in gold.decisions).")] = "",
    who: Annotated[
        str | None, typer.Option(help="Who decides (default: $REGROW_ACTOR, else your user).")
    ] = None,
    params: ParamsOption = None,
) -> None:
    """Move champion back to the version it replaced, and record why."""
    from regrow.model.retrain import rollback as roll_back

    try:
        settings = _settings(params)
        decision = roll_back(settings, reason, _lakehouse(settings), who=who)
    except _model_errors() as err:
        raise _fail(str(err)) from None
    typer.echo(f"champion: v{decision.champion_before} -> v{decision.champion_after} ({reason})")


@app.command()
def models(params: ParamsOption = None) -> None:
    """Versions of the registered model: aliases, mode, parent, cut-off, gate outcome."""
    from regrow.model.registry import Registry
    from regrow.model.retrain import describe_registry

    try:
        settings = _settings(params)
        registry = Registry(settings)
        rows = describe_registry(registry)
    except _model_errors() as err:
        raise _fail(str(err)) from None
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
) -> None:
    """Score a day of silver.features into gold.predictions: the champion decides, the
    challenger (if any) scores in shadow. Replaces the day's partition, then runs the
    gold.predictions suite on it.

    Rescoring past days overwrites what the models of the time predicted: score new days.
    """
    from regrow.catalog import FEATURES
    from regrow.model.scoring import ScoringError, score_day
    from regrow.orchestration.spark import get_spark
    from regrow.validation import ValidationError

    if sum([date is not None, all_days, latest]) != 1:
        raise _fail("give one of --date (and --to), --all or --latest")
    try:
        settings = _settings(params)
        lakehouse = _lakehouse(settings)
        if date is not None:
            days = _days(date, to)
        else:
            days = sorted(dt.date.fromisoformat(d) for d in lakehouse.partition_rows(FEATURES))
            if not days:
                raise _fail(f"{FEATURES} has no day yet: run regrow features first")
            days = days[-1:] if latest else days
        from regrow.model.registry import Registry

        registry = Registry(settings)
        spark = get_spark(settings.spark)
        run_id = run_id or _manual_run_id()
        for day in days:
            r = score_day(spark, settings, day, run_id, lakehouse, registry)
            models = ", ".join(f"{alias} v{v}" for alias, v in r.models.items())
            typer.echo(
                f"{day}: {r.events} events scored by {models}; {r.flagged} flagged "
                f"(score >= {r.threshold}) -> gold.predictions v{r.version}"
            )
    except (*_model_errors(), ScoringError, ValidationError) as err:
        raise _fail(str(err)) from None


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
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    limit: Annotated[int, typer.Option(help="Rows to print with --format table.")] = 50,
) -> None:
    """Print a day's predictions from gold.predictions, highest score first."""
    from regrow.model.scoring import read_predictions
    from regrow.storage.lakehouse import LakehouseError

    try:
        settings = _settings(params)
        rows = read_predictions(
            _lakehouse(settings), date.date(), None if alias is Alias.all else alias.value, top
        )
    except (ConfigError, LakehouseError) as err:
        raise _fail(str(err)) from None
    _echo_rows(rows, format, limit)


@app.command()
def lineage(
    entity: Annotated[str, typer.Option(help="Entity id (dataset.entity_id).")],
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
    from regrow.storage.lakehouse import LakehouseError

    try:
        settings = _settings(params)
        found = lineage_.lineage(_lakehouse(settings), settings.dataset, entity, date.date())
    except (ConfigError, LakehouseError, lineage_.LineageError) as err:
        raise _fail(str(err)) from None
    if format is Format.json:
        typer.echo(json.dumps(found.as_dict(), indent=2, default=str))
    else:
        typer.echo("\n".join(lineage_.describe(found, settings.dataset)))


@app.command("mlflow-ui")
def mlflow_ui(
    params: ParamsOption = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
) -> None:
    """Open the MLflow UI on the project's tracking store (mlflow.tracking_uri)."""
    import os
    import sys

    from regrow.model.registry import artifact_location, tracking_uri

    try:
        settings = _settings(params)
    except ConfigError as err:
        raise _fail(str(err)) from None
    uri = tracking_uri(settings)
    if not uri.startswith(("sqlite:", "postgresql", "mysql", "file:")) and "://" in uri:
        raise _fail(f"mlflow.tracking_uri is a server ({uri}): open it in a browser instead")
    typer.echo(f"MLflow UI on http://127.0.0.1:{port} for {uri} (Ctrl-C stops it)")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--default-artifact-root", artifact_location(settings),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    os.execv(sys.executable, command)


def _manual_run_id() -> str:
    return f"manual__{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"


@app.command()
def tables(params: ParamsOption = None) -> None:
    """List every table: name, Delta version, row count, partitioning and location."""
    try:
        settings = _settings(params)
        infos = _lakehouse(settings).tables()
    except ConfigError as err:
        raise _fail(str(err)) from None
    if not infos:
        typer.echo(f"no tables under {settings.resolve(settings.lakehouse.root)}")
        return
    width = max(len(i.table) for i in infos)
    typer.echo(f"{'table':<{width}}  {'version':>7}  {'rows':>10}  partitioned by / location")
    for info in infos:
        typer.echo(
            f"{info.table:<{width}}  {info.version:>7}  {info.rows:>10}  "
            f"{','.join(info.partition_by) or '-'}  {info.uri}"
        )


@app.command()
def history(
    table: Annotated[str, typer.Argument(help="Table name, e.g. bronze.events.")],
    params: ParamsOption = None,
    limit: Annotated[int, typer.Option(help="Newest commits to show.")] = 20,
) -> None:
    """Show a table's Delta commits, newest first (version, time, operation, metrics)."""
    from regrow.storage.lakehouse import LakehouseError

    try:
        commits = _lakehouse(_settings(params)).history(table, limit)
    except (ConfigError, LakehouseError) as err:
        raise _fail(str(err)) from None
    for c in commits:
        when = dt.datetime.fromtimestamp(c["timestamp"] / 1000, dt.UTC).isoformat(
            timespec="seconds"
        )
        extra = {k: v for k, v in c.items() if k.startswith("regrow.")}
        typer.echo(f"v{c['version']:<5} {when}  {c.get('operation', '?'):<14} {json.dumps(extra)}")


@app.command()
def query(
    sql: Annotated[
        str, typer.Argument(help='SQL over the tables, e.g. "SELECT count(*) FROM bronze.events".')
    ],
    params: ParamsOption = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    limit: Annotated[int, typer.Option(help="Rows to print with --format table.")] = 50,
) -> None:
    """Run SQL (DuckDB) over the Delta tables, named layer.name (bronze.events ...).

    Only the tables the query names are loaded. Examples:
    regrow query "SELECT event_date, count(*) FROM bronze.events GROUP BY 1 ORDER BY 1"
    regrow query "SELECT model_alias, model_version, avg(score), sum(decision::int)
    FROM gold.predictions WHERE event_date = '2026-01-30' GROUP BY ALL"
    """
    from regrow.storage.lakehouse import LakehouseError

    try:
        result = _lakehouse(_settings(params)).sql(sql)
    except (ConfigError, LakehouseError) as err:
        raise _fail(str(err)) from None
    _echo_rows(result, format, limit)


def _echo_rows(rows, format: Format, limit: int) -> None:
    """Arrow rows as an aligned table (at most ``limit`` rows), CSV or JSON lines."""
    frame = rows.to_pandas()
    if format is Format.csv:
        typer.echo(frame.to_csv(index=False), nl=False)
    elif format is Format.json:
        typer.echo(frame.to_json(orient="records", lines=True, date_format="iso"), nl=False)
    else:
        with_limit = frame.head(limit)
        typer.echo(with_limit.to_string(index=False))
        if len(frame) > limit:
            typer.echo(f"... {len(frame) - limit} more rows (use --limit or --format csv)")


@expectations_app.command("generate")
def expectations_generate(params: ParamsOption = None) -> None:
    """Write every table's suite, generated from the dataset contract, as reviewable JSON.

    Rerun it after editing the `dataset` or `validation` section of params.yaml; review
    the diff, and edit the files by hand where the generated rules are not enough.
    """
    from regrow.validation import SuiteError, write_suites

    try:
        settings = _settings(params)
        written = write_suites(
            settings.dataset,
            settings.resolve(settings.validation.expectations_dir),
            settings.validation.allowed_values,
            settings.features,
        )
    except (ConfigError, SuiteError) as err:
        raise _fail(str(err)) from None
    for path in written:
        typer.echo(f"wrote {path}")


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
    from regrow.orchestration.spark import get_spark
    from regrow.storage.lakehouse import LakehouseError
    from regrow.validation import SuiteError, ValidationError, validate_day

    if all_days == (date is not None):
        raise _fail("give either --date or --all")
    run_id = run_id or _manual_run_id()
    blocked = []
    outcomes_by_day: dict[str, dict] = {}
    try:
        settings = _settings(params)
        days = (
            landing.landed_days(settings.resolve(settings.landing.path), "events")
            if all_days
            else [date.date()]
        )
        spark = get_spark(settings.spark)
        kwargs = {"tables": table} if table else {}
        for day in days:
            try:
                outcomes = validate_day(
                    spark, settings, _lakehouse(settings), day, run_id, **kwargs
                )
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
        raise _fail(str(err)) from None
    if summary is not None:
        # Only outcomes, no run ids or times: the same data gives the same file, so a
        # rerun of the DVC stage does not make every later stage stale.
        summary.parent.mkdir(parents=True, exist_ok=True)
        summary.write_text(json.dumps({"days": outcomes_by_day}, indent=2, sort_keys=True) + "\n")
    if blocked:
        raise _fail(f"blocked: {', '.join(map(str, blocked))}")


@dags_app.command("test")
def dags_test(
    dag_id: Annotated[str, typer.Argument(help="DAG id, e.g. regrow_ingest.")],
    date: Annotated[
        dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="Logical date of the run.")
    ],
    to: Annotated[
        dt.datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Last day of a range (inclusive)."),
    ] = None,
    params: ParamsOption = None,
    airflow_home: Annotated[
        Path, typer.Option(help="AIRFLOW_HOME (SQLite metadata DB inside).")
    ] = Path(".airflow"),
) -> None:
    """Run a DAG for one day or a range of days with `airflow dags test` (one run per day)."""
    from regrow.orchestration.airflow_local import airflow_env, ensure_db
    from regrow.orchestration.airflow_local import dags_test as run_dag

    try:
        _settings(params)
    except ConfigError as err:
        raise _fail(str(err)) from None
    env = airflow_env(airflow_home.resolve(), params=find_params(params))
    ensure_db(env)
    for day in _days(date, to):
        result = run_dag(dag_id, day, env)
        status = "success" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
        typer.echo(f"{dag_id} {day}: {status}")
        if result.returncode != 0:
            typer.echo(result.stdout[-4000:] if result.stdout else "", err=True)
            raise typer.Exit(code=1)


if __name__ == "__main__":
    app()
