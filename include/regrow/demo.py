"""``make demo``: the whole pipeline as far as it exists, on params.yaml.

Simulates the configured days of landing files, runs the ``regrow_ingest`` DAG over them
with real Airflow (one ``airflow dags test`` run per day: sensor, Spark ingest, Great
Expectations gate on bronze, silver features and labels, gate on silver), builds the
training set of the newest cut-off (matured labels only, split by time, leakage checks),
trains models through the MLflow registry and the promotion gate (a first model on an
earlier cut-off, then a warm start from it on the newest one: stateful training), scores
the newest day into gold.predictions (the champion decides, a kept challenger scores in
shadow) and traces one prediction's lineage, then prints every table, the validation results and where the data, the training set and
Data Docs live. Like an Airflow backfill, a second run skips the days whose DAG run already
succeeded (an interrupted demo resumes where it stopped); ``--rerun`` runs them again, and
gives the same row counts and training set: each day's run replaces that day's partitions.

With ``--scenario broken_feed`` (``make demo-broken-feed``) it runs in its own folder and
shows the broken day blocked with its reason while the other days pass.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import Queue
from typing import TYPE_CHECKING

import yaml

from regrow.data import simulate
from regrow.orchestration import connect
from regrow.orchestration.airflow_local import airflow_env, dags_test, ensure_db, run_state
from regrow.orchestration.context import setup_logging, stage_context
from regrow.settings import find_params, load_settings

if TYPE_CHECKING:
    from regrow.stage import StageContext

logger = logging.getLogger("regrow.demo")
DAG_ID = "regrow_ingest"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=None, help="params.yaml (default: ./params.yaml)")
    parser.add_argument(
        "--days", type=int, default=None, help="days to simulate (default: simulator.days)"
    )
    parser.add_argument(
        "--scenario",
        default=None,
        help="run a simulator scenario in --workdir (its own landing, lakehouse and reports)",
    )
    parser.add_argument(
        "--workdir", default="data/demo", help="where a --scenario run keeps its data"
    )
    parser.add_argument(
        "--airflow-home", default=".airflow", help="AIRFLOW_HOME for the local runs"
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=1,
        help="DAG days run at once; each worker has its own AIRFLOW_HOME (SQLite) under "
        "--airflow-home. The DAG itself runs one day at a time (max_active_runs): a day's "
        "labels may name the day before's events, which a parallel run may not have written "
        "yet (those labels are then quarantined as unknown)",
    )
    parser.add_argument(
        "--airflow-days",
        type=int,
        default=1,
        help="the newest days run through the regrow_ingest DAG (real Airflow); the days "
        "before them are loaded by one range backfill in this process (default: 2)",
    )
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="run again the days whose DAG run already succeeded (default: skip them, as "
        "`airflow backfill create` does without --reprocess-behavior)",
    )
    parser.add_argument(
        "--replay-days",
        type=int,
        default=REPLAY_DAYS,
        help="days of the closing replay (default, never) of a small covariate-shift world in "
        "data/demo-replay; 0 skips it",
    )
    args = parser.parse_args(argv)
    setup_logging("%(asctime)s %(message)s", datefmt="%H:%M:%S")
    # A line per day or step, the demo's own: the stages' logs (every table write) would
    # bury them. Warnings and errors still show.
    logging.getLogger("regrow").setLevel(logging.WARNING)
    logger.setLevel(logging.INFO)
    started = time.monotonic()

    params = find_params(args.params)
    if args.scenario:
        params = scenario_params(params, args.scenario, Path(args.workdir).resolve(), args.days)
    settings = load_settings(params)
    landing_root = settings.resolve(settings.landing.path)
    summary = simulate.write_landing(
        settings.dataset, settings.simulator, settings.landing, landing_root, args.days
    )
    logger.info(
        "1/8 simulated %d day(s) of '%s': %d events, %d labels -> %s",
        len(summary.days), settings.simulator.scenario, summary.rows["events"],
        summary.rows["labels"], landing_root,
    )  # fmt: skip

    home = Path(args.airflow_home).resolve() / (args.scenario or "default")
    days = list(summary.days)
    split = max(0, len(days) - max(0, args.airflow_days))
    # One warm JVM for everything: this process and every DAG task run their Spark work on
    # the local Spark Connect server (stopped at the end unless it was already running).
    with connect.running(settings) as server:
        logger.info("    Spark Connect server at %s (log: %s)", server.url, server.log_file)
        os.environ["SPARK_REMOTE"] = server.url
        ctx = stage_context(settings, "demo")
        failed = load_history(ctx, days[:split], args.rerun)
        failed += run_days(days[split:], params, home, max(1, args.parallel), args.rerun)
        trained = True
        if not args.scenario:
            trained = first_model(ctx, summary.days[-1]) and daily_loop(ctx) and lineage_of_top(ctx)
        else:
            training_set(ctx, required=False)
        report(ctx)
        if not args.scenario and args.replay_days:
            trained = replay_policies(ctx, params, Path(args.workdir).resolve().parent,
                                      args.replay_days) and trained  # fmt: skip
    logger.info("done in %.0fs", time.monotonic() - started)

    truth = json.loads(Path(summary.truth_path).read_text()) if summary.truth_path else {}
    expected = {
        d["date"] for d in truth.get("per_day", []) if d.get("affected")
    } if settings.simulator.scenario == "broken_feed" else set()  # fmt: skip
    blocked = {str(d) for d in failed}
    if not trained:
        return 1
    if blocked == expected:
        if blocked:
            logger.info(
                "the broken-feed day(s) %s were blocked, as they should be", sorted(blocked)
            )
        return 0
    logger.error("days that failed: %s; expected to fail: %s", sorted(blocked), sorted(expected))
    return 1


def scenario_params(base: Path, scenario: str, workdir: Path, days: int | None) -> Path:
    """A params file for a scenario run: ``base`` with the scenario set and every data path
    under ``workdir`` (so it never mixes with the default demo's tables)."""
    raw = yaml.safe_load(base.read_text(encoding="utf-8"))
    raw["simulator"]["scenario"] = scenario
    # A day blocked by its data stays blocked on a retry: show it at once, not after backoff.
    raw["airflow"]["retries"] = 0
    if days is not None:
        raw["simulator"]["days"] = days
        raw["simulator"]["drift_onset_day"] = min(raw["simulator"]["drift_onset_day"], days - 1)
    raw["landing"]["path"] = str(workdir / "landing")
    raw["lakehouse"]["root"] = str(workdir / "lakehouse")
    raw["reports_dir"] = str(workdir / "reports")
    raw["validation"]["expectations_dir"] = str(
        base.parent.resolve() / raw["validation"]["expectations_dir"]
    )
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def load_history(ctx: StageContext, days: list[dt.date], rerun: bool = False) -> list[dt.date]:
    """The history before the days the DAG shows, as one range backfill in this process
    (one Spark application: ingest, validate, features, labels, validate, day after day);
    returns the day a critical expectation blocked, if any. Days already in silver are
    skipped unless ``rerun``."""
    from regrow.catalog import FEATURES
    from regrow.data.backfill import BackfillBlocked, backfill

    if not days:
        return []
    built = set(ctx.lakehouse.partition_rows(FEATURES))
    todo = days if rerun else [d for d in days if str(d) not in built]
    if len(todo) < len(days):
        logger.info("2/8 %d history day(s) already built: skipped (--rerun builds them again)",
                    len(days) - len(todo))  # fmt: skip
    if not todo:
        return []
    logger.info("2/8 history %s..%s: one range backfill in this process", todo[0], todo[-1])
    started, total, finished = time.monotonic(), len(todo), []

    def progress(day: dict) -> None:
        finished.append(day)
        done = len(finished)
        eta = (time.monotonic() - started) / done * (total - done)
        logger.info(
            "    [%2d/%d] %s: %d events, %d labels, %d quarantined in %.1fs (ETA %.0fs)",
            done, total, day["day"], day["events"], day["labels"], day["quarantined"],
            day["seconds"], eta,
        )  # fmt: skip

    try:
        backfill(ctx, todo[0], todo[-1], progress)
    except BackfillBlocked as err:
        logger.info("    blocked: %s", err.report.blocked)
        return [dt.date.fromisoformat(err.report.blocked.split(":")[0])]
    return []


def run_days(
    days: list[dt.date], params: Path, home: Path, parallel: int, rerun: bool = False
) -> list[dt.date]:
    """Run the DAG once per day, ``parallel`` at a time; returns the days whose run failed.

    A day whose latest run succeeded (every task) is skipped unless ``rerun``.

    Days are independent (each run replaces its own partitions), so they may run at once;
    each worker has its own SQLite metadata DB, which does not take concurrent writers.
    """
    homes = [home / f"worker-{k}" for k in range(parallel)]
    envs = [airflow_env(h, params=params) for h in homes]
    with ThreadPoolExecutor(len(envs)) as pool:
        list(pool.map(ensure_db, envs))
    done = [] if rerun else [
        d for d in days if any(run_state(DAG_ID, d, env) == "success" for env in envs)
    ]  # fmt: skip
    if done:
        logger.info(
            "2/8 %d day(s) already ran successfully (%s..%s): skipped, as a backfill does "
            "(--rerun runs them again)",
            len(done), done[0], done[-1],
        )  # fmt: skip
        days = [d for d in days if d not in done]
    if not days:
        return []
    logger.info(
        "2/8 the newest %d day(s) through the %s DAG (real Airflow), %d at a time (%s)",
        len(days), DAG_ID, len(envs), home,
    )  # fmt: skip
    free: Queue = Queue()
    for env in envs:
        free.put(env)

    def run(day: dt.date) -> tuple[dt.date, int, float, str]:
        env = free.get()
        try:
            t0 = time.monotonic()
            result = dags_test(DAG_ID, day, env)
            return day, result.returncode, time.monotonic() - t0, result.stdout or ""
        finally:
            free.put(env)

    failed = []
    with ThreadPoolExecutor(len(envs)) as pool:
        for i, (day, code, seconds, log) in enumerate(pool.map(run, days), start=1):
            state = "ok" if code == 0 else f"FAILED (exit {code})"
            logger.info(
                "    [%2d/%d] %s %s: %s in %.0fs", i, len(days), DAG_ID, day, state, seconds
            )
            if code != 0:
                failed.append(day)
                log_file = home / f"failed-{day}.log"
                log_file.write_text(log, encoding="utf-8")
                for line in log.splitlines():  # the blocked day, one line per failure
                    if " is blocked:" in line or ("expect_" in line and "warning" not in line):
                        logger.info("        %s", line.strip()[:200])
                logger.info("        full log: %s", log_file)
    return failed


def training_set(ctx: StageContext, required: bool, cutoff: dt.date | None = None) -> bool:
    """Build the training set of ``cutoff`` (default: the day after the newest features
    day) and log its numbers.

    Returns False when it cannot be built and ``required`` (the default demo); a scenario
    run with too few days only logs why.
    """
    from regrow.data.trainset import LeakageError, TrainsetError, build_trainset
    from regrow.storage.lakehouse import LakehouseError

    try:
        result = build_trainset(ctx, cutoff)
    except (TrainsetError, LakehouseError, LeakageError) as err:
        logger.log(logging.ERROR if required else logging.INFO, "3/8 no training set: %s", err)
        return not required
    m = result.manifest
    logger.info(
        "3/8 training set of cut-off %s (labels as known then, %s) -> %s",
        m["cutoff_date"], m["matured"], result.path,
    )  # fmt: skip
    for name, split in m["splits"].items():
        logger.info(
            "    %-10s %6d rows  %4d positives  label rate %.4f  %s..%s",
            name, split["rows"], split["positives"], split["label_rate"],
            split["first_day"], split["last_day"],
        )  # fmt: skip
    candidates = m["candidates"]
    logger.info(
        "    left out: %d event(s) whose label was not known at the cut-off; %s",
        sum(n for k, n in candidates.items() if k.endswith("_excluded")), m["content_hash"],
    )  # fmt: skip
    return True


def first_model(ctx: StageContext, newest: dt.date, days_watched: int = 8) -> bool:
    """The champion the loop starts from: a stateless model on the training set of a cut-off
    ``days_watched`` days before the end, gated against the baselines (a resumed demo keeps
    the champion it has)."""
    from regrow.catalog import CHAMPION
    from regrow.data.trainset import TrainsetError
    from regrow.model.registry import RegistryError
    from regrow.model.training import TrainingError

    try:
        if ctx.registry.alias(CHAMPION) is not None:
            logger.info("3/8 champion v%s exists: the loop starts from it",
                        ctx.registry.alias(CHAMPION).version)  # fmt: skip
            return True
        if not training_set(ctx, True, newest - dt.timedelta(days=days_watched - 1)):
            return False
        _retrain(ctx, "stateless", "demo", "4/8")
    except (RegistryError, TrainingError, TrainsetError) as err:
        logger.error("4/8 the first model failed: %s", err)
        return False
    return ctx.registry.alias(CHAMPION) is not None or _no_champion()


def _no_champion() -> bool:
    logger.error("4/8 the first model did not pass the gate: no champion to watch")
    return False


def daily_loop(ctx: StageContext) -> bool:
    """Continual learning, day by day from the champion's cut-off to the newest day: score
    with the champion, monitor (drift, estimated and realised performance), let the policy
    decide with its reasons, and retrain (a warm start on the newest days, or from scratch
    when a cap or the policy says so) when it asks, through the training set of that day
    and the promotion gate."""
    from regrow.catalog import CHAMPION, FEATURES
    from regrow.data.trainset import TrainsetError, build_trainset
    from regrow.model.registry import RegistryError
    from regrow.model.scoring import ScoringError, score_day
    from regrow.model.training import TrainingError
    from regrow.monitoring.monitor import MonitorError, monitor_day, report_day
    from regrow.policy.daily import PolicyError, decide_day
    from regrow.validation import ValidationError

    settings, lakehouse = ctx.settings, ctx.lakehouse
    champion = ctx.registry.alias(CHAMPION)
    start = dt.date.fromisoformat(champion.tags["cutoff_date"])
    days = sorted(d for d in (dt.date.fromisoformat(x) for x in lakehouse.partition_rows(FEATURES))
                  if d >= start)  # fmt: skip
    metric = settings.evaluate.primary_metric
    logger.info(
        "5/8 the daily loop over %d day(s), %s..%s: score -> monitor -> decide -> retrain",
        len(days), days[0], days[-1],
    )  # fmt: skip
    path = None
    for day in days:
        try:
            scored = score_day(ctx, day)
            watched = monitor_day(ctx, day)
            decision = decide_day(ctx, day)
        except (RegistryError, ScoringError, ValidationError, MonitorError, PolicyError) as err:
            logger.error("    %s failed: %s", day, err)
            return False
        flagged = sorted({r.column for r in watched.drift.flagged})
        estimated = next((r.value for r in watched.performance.results
                          if r.check == "performance_estimated" and r.column == metric), None)  # fmt: skip
        realised = next((r.value for r in watched.performance.results
                         if r.check == "performance_realised" and r.column == metric), None)  # fmt: skip
        logger.info(
            "    %s  v%s  %d scored, %d flagged | drift: %s | %s est %s, realised %s | %s%s",
            day, scored.models.get(CHAMPION), scored.events, scored.flagged,
            ", ".join(flagged) or "none", metric, _num(estimated), _num(realised),
            decision.action, _why(decision),
        )  # fmt: skip
        if decision.retrain:
            logger.info("      why: %s", decision.reason)
            try:
                build_trainset(ctx, day + dt.timedelta(days=1))
                _retrain(ctx, decision.mode, f"policy:{decision.trigger} ({day})", "      ")
            except (RegistryError, TrainingError, TrainsetError) as err:
                logger.info("      retrain not possible: %s", err)
        path = report_day(ctx, day)
    _decision_summary(ctx)
    logger.info("    the newest day's report: %s", path)
    return True


def _why(decision) -> str:
    """The trigger of a retrain; what held a fired trigger back (cooldown, budget)."""
    if decision.trigger == "none":
        return ""
    if decision.retrain:
        return f" ({decision.trigger})"
    held = decision.reason.split(";")[0].split(" but ")[-1]
    return f" ({decision.trigger} fired but {held})"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _decision_summary(ctx: StageContext) -> None:
    counts: dict[str, int] = {}
    for row in ctx.lakehouse.sql(
        "SELECT decision_date, action, trigger, model_version, champion_after "
        "FROM gold.decisions ORDER BY decision_date, decided_at"
    ).to_pylist():
        counts[row["action"]] = counts.get(row["action"], 0) + 1
    logger.info(
        "    decisions: %s (regrow query \"SELECT * FROM gold.decisions\")",
        ", ".join(f"{n} {a}" for a, n in sorted(counts.items())),
    )  # fmt: skip


def _retrain(ctx: StageContext, mode: str, trigger: str, step: str) -> None:
    from regrow.model.retrain import train_and_gate

    result = train_and_gate(ctx, trigger=trigger, mode=mode)
    metric = ctx.settings.evaluate.primary_metric
    c, t = result.challenger, result.challenger.training
    backtest, _ = result.evaluation.primary(metric)
    logger.info(
        "%s v%s (%s): %d trees, %d new, on %d rows; backtest %s %.4f; baselines %s",
        step, c.version, t["mode_reason"], t["trees"], t["trees_added"], t["train_rows"], metric,
        backtest or float("nan"),
        ", ".join(f"{k} {v[metric]:.4f}" for k, v in result.evaluation.baselines.items()
                  if v.get(metric) is not None),
    )  # fmt: skip
    logger.info(
        "%s gate: %s", " " * len(step.rstrip()) if step.strip() else step,
        "promoted" if result.outcome.promoted else f"kept as challenger ({result.outcome.reason})",
    )  # fmt: skip


def lineage_of_top(ctx: StageContext) -> bool:
    """The newest day's top scores, and one prediction traced to its model and data."""
    from regrow.catalog import PREDICTIONS
    from regrow.model.lineage import describe, lineage
    from regrow.model.scoring import read_predictions

    settings, lakehouse = ctx.settings, ctx.lakehouse
    day = max(dt.date.fromisoformat(d) for d in lakehouse.partition_rows(PREDICTIONS))
    top = read_predictions(lakehouse, day, top=3).to_pylist()
    event_id = settings.dataset.event_id
    entity_id = settings.dataset.entity_id or event_id
    for row in top:
        logger.info(
            "6/8 top of %s: %s %s (%s) score %.3f decision %s", day, event_id, row[event_id],
            row[entity_id], row["score"], row["decision"],
        )  # fmt: skip
    if top:
        logger.info("    regrow lineage --entity %s --date %s:", top[0][entity_id], day)
        for line in describe(lineage(lakehouse, settings.dataset, top[0][entity_id], day),
                             settings.dataset):  # fmt: skip
            logger.info("      %s", line)
    return True


# The closing replay: a small world (600 events a day, labels within 2 days) whose inputs
# shift on day 10 (the demo's covariate shift), replayed under the default policy and never.
REPLAY_DAYS, REPLAY_WARMUP = 18, 9
REPLAY_SECTIONS = {
    "dataset": {"label_delay_days": 2},
    "simulator": {"events_per_day": 600, "n_entities": 800, "mean_label_delay_days": 1.0,
                  "drift_onset_day": 10},
    "features": {"windows": ["1h", "24h"]},
    "split": {"window_days": 14, "test_days": 2, "validation_days": 2},
    "train": {"min_rows": 300, "min_positives": 5},
    "monitor": {"min_rows": 300, "performance": {"bootstrap": 50, "min_positives": 5}},
    "policy": {"triggers": {"drift": {"n": 1, "m": 1}}},
}  # fmt: skip


def replay_policies(ctx: StageContext, params: Path, data_dir: Path, days: int) -> bool:
    """8/8: which policy pays? A short replay of a covariate-shift world under ``default`` and
    ``never`` (regrow replay), in its own folder; prints the scoreboard and its page."""
    from regrow.model.registry import artifact_location, tracking_uri
    from regrow.replay.run import replay
    from regrow.replay.scoreboard import table_text
    from regrow.validation import write_suites

    workdir = data_dir / "demo-replay"
    raw = yaml.safe_load(params.read_text(encoding="utf-8"))
    for name, values in REPLAY_SECTIONS.items():
        raw[name] = {**raw.get(name, {}), **values}
    raw["lakehouse"]["root"] = str(workdir / "lakehouse")
    raw["reports_dir"] = str(workdir / "reports")
    # The demo's MLflow: `make mlflow` shows the replay's runs beside the models'.
    raw["mlflow"] |= {"tracking_uri": tracking_uri(ctx.settings),
                      "artifact_location": artifact_location(ctx.settings)}  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    replay_params = workdir / "params.yaml"
    replay_params.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    settings = load_settings(replay_params)
    # Its own suites, generated from the contract (its feature windows are not the demo's).
    write_suites(settings.dataset, settings.resolve(settings.validation.expectations_dir),
                 settings.features)  # fmt: skip
    logger.info(
        "8/8 replay: %d days of covariate_shift under default and never (%s)", days, workdir
    )
    found = replay(
        stage_context(settings, "demo-replay", spark=ctx.spark), ["default", "never"], days,
        scenario="covariate_shift", workdir=workdir, warmup_days=REPLAY_WARMUP,
        progress=lambda line: logger.info("    %s", line),
    )  # fmt: skip
    for row in table_text(found.scoreboard):
        logger.info("    %s", "  ".join(f"{cell:>12}" for cell in row))
    logger.info("    scoreboard: %s", found.page)
    logger.info("    regrow replay --scenario NAME --days N --policy ... replays any history")
    return True


def report(ctx: StageContext) -> None:
    settings, lakehouse = ctx.settings, ctx.lakehouse
    logger.info("7/8 tables under %s:", lakehouse.root)
    for info in lakehouse.tables():
        logger.info("    %-20s v%-4d %8d rows  %s", info.table, info.version, info.rows, info.uri)
    if lakehouse.exists("bronze.quarantine"):
        for row in lakehouse.sql(
            "SELECT source_kind, reason, count(*) AS n FROM bronze.quarantine "
            "GROUP BY 1, 2 ORDER BY n DESC LIMIT 5"
        ).to_pylist():
            logger.info(
                "    quarantined %s: %d x %s", row["source_kind"], row["n"], row["reason"][:120]
            )
    if lakehouse.exists("gold.validation"):
        for row in lakehouse.sql(
            "SELECT severity, success, count(*) AS n FROM gold.validation GROUP BY 1, 2 ORDER BY 1, 2"
        ).to_pylist():
            state = "passed" if row["success"] else "failed"
            logger.info(
                "    validation: %d %s expectation results %s", row["n"], row["severity"], state
            )
    docs = Path(settings.resolve(settings.reports_dir), "data_docs", "index.html")
    logger.info("    Data Docs: %s", docs if docs.is_file() else "(not built)")
    params = (
        ""
        if settings.base_dir == str(Path.cwd())
        else f" --params {Path(settings.base_dir) / 'params.yaml'}"
    )
    logger.info(
        '    query them: regrow query "SELECT event_date, count(*) FROM bronze.events GROUP BY 1"%s',
        params,
    )
    if lakehouse.exists("gold.predictions"):
        logger.info("    predictions: regrow predictions --date D --top 10%s", params)


if __name__ == "__main__":
    sys.exit(main())
