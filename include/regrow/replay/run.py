"""``regrow replay``: a history replayed under several retraining policies.

1. The history's files: a simulator scenario is simulated into ``workdir/landing``; a
   ``--landing`` directory of the user's own files is read where it is (never written).
2. The data stages run once for the whole range, into ``workdir/lakehouse`` (a range
   backfill: ingest → validate → features → labels → validate; days already built there are
   kept, so an interrupted replay resumes). The user's own tables are never touched.
3. silver is read once into memory (:mod:`regrow.replay.history`); the first model is
   trained on the cut-off ``warmup_days`` after the first day, and every policy starts from
   it (:mod:`regrow.replay.engine`), in parallel threads when ``workers`` > 1.
4. One row per policy and day goes to ``gold.replay`` of the configured lakehouse (a rerun
   of the same replay id replaces its rows), the scoreboard to
   ``reports/replay/<replay id>.html``, and MLflow gets a parent run with a child per
   policy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import time
import typing
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from regrow.catalog import FEATURES, REPLAY
from regrow.data import landing as landing_files
from regrow.data.backfill import backfill, range_days
from regrow.data.simulate import check_days_past, claim_landing, write_landing
from regrow.data.simulate.ground_truth import TRUTH_FILE
from regrow.data.transform import TrainsetError
from regrow.model.training import TrainingError
from regrow.replay.engine import PolicyRun, first_model, replay_policy
from regrow.replay.freshness import Freshness, replay_rows, value_of_freshness
from regrow.replay.history import ReplayError, load_history
from regrow.replay.policies import POLICIES, policy_named
from regrow.replay.scoreboard import SCHEMA, summarise, write_scoreboard
from regrow.settings import Scenario, Settings
from regrow.storage.lakehouse import Lakehouse

if TYPE_CHECKING:
    from regrow.stage import StageContext

logger = logging.getLogger(__name__)

SCENARIOS: tuple[str, ...] = typing.get_args(Scenario)
# What a replay's landing was simulated with, and what its tables were built under.
SIMULATED, BUILT_UNDER = "_replay_simulation.json", "_replay_built_under.json"


@dataclass
class ReplayReport:
    replay_id: str
    source: str
    first: str  # the first day of the history
    last: str
    scored_from: str  # the first day the policies scored (after the warm-up)
    policies: list[str]
    scoreboard: list[dict[str, Any]]
    page: str
    table_version: int
    mlflow_run_id: str | None
    seconds: dict[str, float] = field(default_factory=dict)
    first_model: dict[str, Any] = field(default_factory=dict)
    # With --freshness: per staleness k, the mean quality of the days scored k days stale.
    freshness: list[dict[str, Any]] = field(default_factory=list)


def check_choices(policies: Sequence[str], scenario: str | None, freshness: bool = False) -> None:
    """Fail at once on an unknown policy or scenario, listing the valid ones (no policy is
    a choice only with ``freshness``)."""
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ReplayError(
            f"unknown policy {', '.join(map(repr, unknown))}: choose from {', '.join(POLICIES)}"
        )
    if not policies and not freshness:
        raise ReplayError(
            f"no policy given: choose from {', '.join(POLICIES)} (or give --freshness)"
        )
    if scenario is not None and scenario not in SCENARIOS:
        raise ReplayError(f"unknown scenario {scenario!r}: choose from {', '.join(SCENARIOS)}")


def replay_settings(
    settings: Settings, workdir: Path, scenario: str | None, landing: Path | None, days: int
) -> Settings:
    """The settings the replay's data stages run under: its own lakehouse and reports under
    ``workdir``; the scenario's simulated landing there, or the user's ``landing``."""
    updates: dict[str, Any] = {
        "lakehouse": settings.lakehouse.model_copy(update={"root": str(workdir / "lakehouse")}),
        "reports_dir": str(workdir / "reports"),
    }
    if scenario is not None:
        updates["landing"] = settings.landing.model_copy(update={"path": str(workdir / "landing")})
        updates["simulator"] = settings.simulator.model_copy(
            update={"enabled": True, "scenario": scenario, "days": days}
        )
    else:
        assert landing is not None
        updates["landing"] = settings.landing.model_copy(update={"path": str(landing)})
    return settings.model_copy(update=updates)


def replay_id(
    source: str,
    days: int,
    warmup: int,
    policies: Sequence[str],
    settings: Settings,
    freshness: bool = False,
) -> str:
    """The same history, days and policies under the same settings: the same id (a rerun
    replaces its rows); anything else: another."""
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in source)[:40]
    digest = hashlib.sha256(
        json.dumps(
            [source, days, warmup, sorted(policies), settings.model_dump(mode="json")]
            + (["freshness"] if freshness else []),
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()[:10]
    return f"{name}-{days}d-{digest}"


def default_warmup(settings: Settings) -> int:
    """Days before the first model's cut-off: the label window, then the days a time split
    needs (test, validation, and a week of train)."""
    split = settings.split
    return settings.dataset.label_delay_days + 1 + split.test_days + split.validation_days + 7


def replay(
    ctx: StageContext,
    policies: Sequence[str],
    days: int,
    *,
    scenario: str | None = None,
    landing: Path | None = None,
    workdir: Path,
    warmup_days: int | None = None,
    workers: int = 1,
    freshness: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ReplayReport:
    """Replay ``days`` days of a scenario or of a landing directory under ``policies``;
    with ``freshness``, also score each day with models ``replay.freshness_days`` stale
    (:mod:`regrow.replay.freshness`).

    Raises:
        ReplayError: an unknown policy or scenario, a landing directory without the
            contract's columns or without enough days, too few days for the warm-up.
    """
    say = progress or (lambda text: logger.info("%s", text))
    check_choices(policies, scenario, freshness)
    if (scenario is None) == (landing is None):
        raise ReplayError("give one of --scenario or --landing")
    base = ctx.settings
    warmup = default_warmup(base) if warmup_days is None else warmup_days
    if warmup < 1 or warmup >= days:
        raise ReplayError(
            f"--days {days} leaves no day to replay after a warm-up of {warmup} day(s) (the "
            f"first model needs matured labels: dataset.label_delay_days + split.test_days + "
            f"split.validation_days + 8); replay more days or lower --warmup-days"
        )
    workdir = workdir.resolve()
    settings = replay_settings(base, workdir, scenario, landing, days)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    if scenario is not None:
        source = scenario
        history_days = _simulate(settings, days, say)
    else:
        source = Path(str(landing)).name or "landing"
        history_days = _landed(settings, days)
    seconds["landing"] = round(time.perf_counter() - started, 1)
    rid = replay_id(source, days, warmup, policies, base, freshness)

    # The data stages' own context: the replay's settings and lakehouse, this Spark.
    data_ctx = dataclasses.replace(
        ctx, settings=settings, lakehouse=Lakehouse.from_settings(settings),
        make_spark=lambda: ctx.spark,
    )  # fmt: skip
    started = time.perf_counter()
    _data_stages(data_ctx, history_days, say)
    seconds["data_stages"] = round(time.perf_counter() - started, 1)

    started = time.perf_counter()
    history = load_history(settings, data_ctx.lakehouse, history_days)
    cutoff = history_days[0] + dt.timedelta(days=warmup)
    scored = [d for d in history_days if d >= cutoff]
    try:
        start = first_model(history, cutoff)
    except (TrainsetError, TrainingError) as err:
        raise ReplayError(
            f"the first model (cut-off {cutoff}, after a warm-up of {warmup} days) cannot be "
            f"trained: {err}. Raise --warmup-days or replay more days"
        ) from err
    say(
        f"first model: cut-off {cutoff}, {start.facts['train_rows']} training rows, "
        f"{start.facts['trees']} trees; every policy starts from it on {scored[0]}"
    )
    runs = _run_policies(history, policies, start, scored, workers, say)
    seconds["policies"] = round(time.perf_counter() - started, 1)
    fresh = None
    if freshness:
        started = time.perf_counter()
        fresh = value_of_freshness(
            history, settings.replay.freshness_days, scored, cutoff, workers, say
        )
        seconds["freshness"] = round(time.perf_counter() - started, 1)

    rows = [{"replay_id": rid, "source": source, **row} for run in runs for row in run.rows]
    if fresh is not None:
        rows += [{"replay_id": rid, "source": source, **row} for row in replay_rows(fresh)]
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    commit = ctx.lakehouse.replace_records(REPLAY, table, {"replay_id": rid})
    truth = _truth(settings) if scenario is not None else {}
    board = summarise(runs)
    page = write_scoreboard(
        Path(base.resolve(base.reports_dir)) / "replay" / f"{rid}.html",
        rid, source, runs, board, truth, start.facts, fresh,
    )  # fmt: skip
    run_id = _log_mlflow(ctx, rid, source, runs, board, page, start.facts, days, fresh)
    return ReplayReport(
        rid, source, str(history_days[0]), str(history_days[-1]), str(scored[0]),
        list(policies), board, str(page), commit.version, run_id, seconds, start.facts,
        fresh.summary if fresh is not None else [],
    )  # fmt: skip


def _simulate(settings: Settings, days: int, say: Callable[[str], None]) -> list[dt.date]:
    """The scenario's landing files, simulated unless an earlier replay in this workdir
    simulated the same (the simulator's settings and the contract are recorded beside)."""
    root = settings.resolve(settings.landing.path)
    sim = settings.simulator.model_copy(update={"days": days})
    marker = Path(root) / SIMULATED
    wanted = {"simulator": sim.model_dump(mode="json"),
              "dataset": settings.dataset.model_dump(mode="json"),
              "format": settings.landing.format}  # fmt: skip
    if marker.exists() and json.loads(marker.read_text(encoding="utf-8")) == wanted:
        say(f"landing: {days} simulated day(s) of {sim.scenario} already in {root}")
        return range_days(sim.start_date, sim.start_date + dt.timedelta(days=days - 1))
    check_days_past(sim, days)  # before the earlier simulation's files are removed
    claim_landing(root, replace=True)
    summary = write_landing(settings.dataset, sim, settings.landing, root, days)
    marker.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")
    say(f"landing: simulated {days} day(s) of {sim.scenario}: {summary.rows['events']} events")
    return list(summary.days)


def _landed(settings: Settings, days: int) -> list[dt.date]:
    """The first ``days`` landed days of the user's directory, checked for the contract's
    columns before anything runs."""
    root = settings.resolve(settings.landing.path)
    landed = landing_files.landed_days(root, "events")
    if not landed:
        raise ReplayError(
            f"--landing {root} has no day folder of events ({root}/events/YYYY-MM-DD/): "
            f"nothing to replay"
        )
    chosen = landed[:days]
    if len(chosen) < days:
        raise ReplayError(
            f"--landing {root} has {len(landed)} day(s) of events "
            f"({landed[0]}..{landed[-1]}), fewer than --days {days}"
        )
    expected = range_days(chosen[0], chosen[-1])
    gaps = sorted(set(expected) - set(chosen))
    if gaps:
        raise ReplayError(
            f"--landing {root} has no events for {', '.join(map(str, gaps[:5]))}"
            f"{' ...' if len(gaps) > 5 else ''}: a replay needs consecutive days"
        )
    dataset = settings.dataset
    needed = {
        "events": [dataset.event_id, dataset.event_timestamp, *dataset.features]
        + ([dataset.entity_id] if dataset.entity_id else []),
        "labels": [dataset.event_id, dataset.label, dataset.label_timestamp],
    }
    for kind, columns in needed.items():
        found = (landing_files.find_files(root, settings.landing, kind, d) for d in chosen)
        files = next((f for f in found if f), None)
        if files is None:
            continue
        path = files[0]
        header = _columns_of(path, settings.landing.format)
        missing = [c for c in columns if c not in header]
        if missing:
            raise ReplayError(
                f"{path} lacks the contract's column(s) {', '.join(map(repr, missing))} "
                f"(it has {', '.join(map(repr, header[:20]))}): set the dataset section of "
                f"params.yaml to your columns"
            )
    return chosen


def _columns_of(path: str, fmt: str) -> list[str]:
    """The column names of a landing file (its header, schema or first record)."""
    import fsspec
    import pandas as pd
    import pyarrow.parquet as pq

    with fsspec.open(path, "rb", compression="infer") as handle:
        if fmt == "parquet":
            return list(pq.read_schema(handle).names)
        if fmt == "json":
            return list(pd.read_json(handle, lines=True, nrows=1).columns)
        return list(pd.read_csv(handle, nrows=0).columns)


def _data_stages(ctx: StageContext, days: list[dt.date], say: Callable[[str], None]) -> None:
    """The range backfill of the days not built yet (a resumed replay keeps the others)."""
    lakehouse = ctx.lakehouse
    check_built_under(ctx.settings, Path(lakehouse.root))
    built = set(lakehouse.partition_rows(FEATURES)) if lakehouse.exists(FEATURES) else set()
    todo = [d for d in days if str(d) not in built]
    if not todo:
        say(f"data stages: {len(days)} day(s) already built in {lakehouse.root}")
        return
    total, t0 = len(todo), time.perf_counter()

    def progress(figures: dict[str, Any]) -> None:
        done = len(figures_seen) + 1
        figures_seen.append(figures)
        left = (time.perf_counter() - t0) / done * (total - done)
        say(f"data {figures['day']}: {figures['events']} events, {figures['labels']} labels "
            f"in {figures['seconds']} s ({done}/{total}, ETA {left:.0f} s)")  # fmt: skip

    figures_seen: list[dict[str, Any]] = []
    backfill(ctx, todo[0], days[-1], progress=progress)


def check_built_under(settings: Settings, root: Path) -> None:
    """The replay's lakehouse keeps the days it built for the next replay in the same
    workdir, unless the settings its tables depend on changed since: then it refuses,
    naming the folder (its days would not be what params.yaml now describes).

    Raises:
        ReplayError: ``root`` was built under another contract, landing or feature set.
    """
    wanted = {name: getattr(settings, name).model_dump(mode="json")
              for name in ("dataset", "landing", "features")}  # fmt: skip
    marker = root / BUILT_UNDER
    if marker.exists():
        if json.loads(marker.read_text(encoding="utf-8")) != wanted:
            raise ReplayError(
                f"the replay's tables in {root} were built under other dataset, landing or "
                f"features settings than params.yaml's now: remove {root} (or give another "
                f"--workdir) to build them again"
            )
        return
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")


def _run_policies(
    history, policies: Sequence[str], start, days: list[dt.date], workers: int,
    say: Callable[[str], None],
) -> list[PolicyRun]:  # fmt: skip
    rules = history.settings.policy
    chosen = [policy_named(name, rules) for name in policies]

    def progress(name: str, row: dict[str, Any]) -> None:
        if row["action"] != "none" or row["day"] == days[-1]:
            what = row["action"] + (f" ({'promoted' if row['promoted'] else 'kept'})"
                                    if row["action"] != "none" else "")  # fmt: skip
            say(f"{name} {row['day']}: v{row['model_version']} {what}: {row['reason'][:120]}")

    if workers <= 1:
        return [replay_policy(history, p, start, days, progress) for p in chosen]
    with ThreadPoolExecutor(workers, thread_name_prefix="replay") as pool:
        futures = [pool.submit(replay_policy, history, p, start, days, progress) for p in chosen]
        return [f.result() for f in futures]


def _truth(settings: Settings) -> dict[str, Any]:
    path = Path(settings.resolve(settings.landing.path)) / TRUTH_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _log_mlflow(
    ctx: StageContext, rid: str, source: str, runs: list[PolicyRun], board: list[dict[str, Any]],
    page: Path, first: dict[str, Any], days: int, fresh: Freshness | None = None,
) -> str | None:  # fmt: skip
    """One parent run per replay, a child per policy (its summary as metrics, its daily
    realised quality as a metric series); the value of freshness as the parent's metrics
    (``freshness_pr_auc`` and ``freshness_roc_auc``, one step per staleness in days)."""
    from mlflow.entities import Metric, Param

    registry = ctx.registry
    by_policy = {row["policy"]: row for row in board}
    with registry.run(
        f"replay {rid}", tags={"regrow.replay_id": rid, "regrow.kind": "replay"}
    ) as parent:
        import mlflow

        mlflow.log_params({"source": source, "days": days, "policies": ",".join(r.policy for r in runs),
                           "first_model_cutoff": first["cutoff"]})  # fmt: skip
        mlflow.log_artifact(str(page))
        if fresh is not None:
            mlflow.log_param("freshness_days", ",".join(map(str, fresh.staleness)))
            for entry in fresh.summary:
                for name in ("pr_auc", "roc_auc"):
                    if entry[f"mean_{name}"] is not None:
                        mlflow.log_metric(f"freshness_{name}", entry[f"mean_{name}"],
                                          step=entry["staleness_days"])  # fmt: skip
        client, experiment = registry.client, registry.experiment_id()
        for run in runs:
            child = client.create_run(
                experiment, run_name=f"{rid} {run.policy}",
                tags={"mlflow.parentRunId": parent, "regrow.replay_id": rid, "regrow.policy": run.policy},
            )  # fmt: skip
            stamp = int(time.time() * 1000)
            summary = by_policy[run.policy]
            metrics = [Metric(k, float(v), stamp, 0) for k, v in summary.items()
                       if isinstance(v, int | float) and not isinstance(v, bool)]  # fmt: skip
            metrics += [
                Metric("daily_pr_auc", float(row["pr_auc"]), stamp, step)
                for step, row in enumerate(run.rows) if row.get("pr_auc") is not None
            ]  # fmt: skip
            client.log_batch(child.info.run_id, metrics=metrics[:1000],
                             params=[Param("policy", run.policy)])  # fmt: skip
            for k in range(1000, len(metrics), 1000):
                client.log_batch(child.info.run_id, metrics=metrics[k : k + 1000])
            client.set_terminated(child.info.run_id)
    return parent
