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
        default=min(2, os.cpu_count() or 1),
        help="days run at once; each worker has its own AIRFLOW_HOME (SQLite) under --airflow-home",
    )
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="run again the days whose DAG run already succeeded (default: skip them, as "
        "`airflow backfill create` does without --reprocess-behavior)",
    )
    args = parser.parse_args(argv)
    setup_logging("%(asctime)s %(message)s", datefmt="%H:%M:%S")
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
        "1/6 simulated %d day(s) of '%s': %d events, %d labels -> %s",
        len(summary.days), settings.simulator.scenario, summary.rows["events"],
        summary.rows["labels"], landing_root,
    )  # fmt: skip

    home = Path(args.airflow_home).resolve() / (args.scenario or "default")
    failed = run_days(list(summary.days), params, home, max(1, args.parallel), args.rerun)
    ctx = stage_context(settings, "demo")
    trained = training_set(ctx, required=not args.scenario)
    if trained and not args.scenario:
        trained = retrain_models(ctx) and score_newest_day(ctx)
    report(ctx)
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
            "2/6 %d day(s) already ran successfully (%s..%s): skipped, as a backfill does "
            "(--rerun runs them again)",
            len(done), done[0], done[-1],
        )  # fmt: skip
        days = [d for d in days if d not in done]
    logger.info("2/6 running the %s DAG for each day, %d at a time (%s)", DAG_ID, len(envs), home)
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
                for line in log.splitlines():
                    if "critical expectation(s) failed" in line or line.strip().startswith(
                        "- expect_"
                    ):
                        logger.info("        %s", line.strip()[:200])
                logger.info("        full log: %s", log_file)
    return failed


def training_set(ctx: StageContext, required: bool) -> bool:
    """Build the training set of the default cut-off and log its numbers.

    Returns False when it cannot be built and ``required`` (the default demo); a scenario
    run with too few days only logs why.
    """
    from regrow.data.trainset import LeakageError, TrainsetError, build_trainset
    from regrow.storage.lakehouse import LakehouseError

    try:
        result = build_trainset(ctx)
    except (TrainsetError, LakehouseError, LeakageError) as err:
        logger.log(logging.ERROR if required else logging.INFO, "3/6 no training set: %s", err)
        return not required
    m = result.manifest
    logger.info(
        "3/6 training set of cut-off %s (labels as known then, %s) -> %s",
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


def retrain_models(ctx: StageContext, earlier_by_days: int = 3) -> bool:
    """Stage 2 and 3 of continual learning on the demo's data.

    With no champion yet: a stateless model on the training set of a cut-off
    ``earlier_by_days`` before the newest, gated against the baselines. Then a warm start
    from the champion on the newest training set (only the rows after the champion's
    window), gated against it. A resumed demo skips what the champion already learned.
    """
    from regrow.catalog import CHAMPION
    from regrow.data.trainset import TrainsetError, build_trainset
    from regrow.model.registry import RegistryError
    from regrow.model.retrain import retrain_needed
    from regrow.model.training import TrainingError

    settings, lakehouse = ctx.settings, ctx.lakehouse
    newest = json.loads(
        (Path(settings.resolve(settings.split.output_dir)) / "manifest.json").read_text()
    )
    cutoff = dt.date.fromisoformat(newest["cutoff_date"])
    try:
        registry = ctx.registry
        if registry.alias(CHAMPION) is None:
            earlier = cutoff - dt.timedelta(days=earlier_by_days)
            build_trainset(ctx, earlier)
            _retrain(ctx, "stateless", "demo")
            build_trainset(ctx, cutoff)
        needed, why = retrain_needed(ctx)
        if needed:
            _retrain(ctx, "warm_start", "demo")
        else:
            logger.info("4/6 no retrain: %s", why)
    except (RegistryError, TrainingError, TrainsetError) as err:
        logger.error("4/6 retrain failed: %s", err)
        return False
    for row in lakehouse.sql(
        "SELECT action, model_version, champion_before, champion_after, reason "
        "FROM gold.decisions ORDER BY decided_at"
    ).to_pylist():
        logger.info(
            "    decision: %-8s v%s  champion %s -> v%s", row["action"], row["model_version"],
            f"v{row['champion_before']}" if row["champion_before"] else "none",
            row["champion_after"],
        )  # fmt: skip
    logger.info("    models: regrow models; runs: make mlflow (MLflow UI on %s)", registry.uri)
    return True


def _retrain(ctx: StageContext, mode: str, trigger: str) -> None:
    from regrow.model.retrain import train_and_gate

    result = train_and_gate(ctx, trigger=trigger, mode=mode)
    metric = ctx.settings.evaluate.primary_metric
    c, t = result.challenger, result.challenger.training
    backtest, _ = result.evaluation.primary(metric)
    logger.info(
        "4/6 v%s (%s): %d trees, %d new, on %d rows; backtest %s %.4f; baselines %s",
        c.version, t["mode_reason"], t["trees"], t["trees_added"], t["train_rows"], metric,
        backtest or float("nan"),
        ", ".join(f"{k} {v[metric]:.4f}" for k, v in result.evaluation.baselines.items()
                  if v.get(metric) is not None),
    )  # fmt: skip
    logger.info("    %s", "promoted" if result.outcome.promoted else "kept as challenger (shadow)")


def score_newest_day(ctx: StageContext) -> bool:
    """Score the newest features day: the champion decides, the challenger (if the gate
    kept one) scores in shadow; then show the top scores and one prediction's lineage."""
    from regrow.catalog import FEATURES
    from regrow.model.lineage import describe, lineage
    from regrow.model.registry import RegistryError
    from regrow.model.scoring import ScoringError, read_predictions, score_day
    from regrow.validation import ValidationError

    settings, lakehouse = ctx.settings, ctx.lakehouse
    day = max(dt.date.fromisoformat(d) for d in lakehouse.partition_rows(FEATURES))
    try:
        r = score_day(ctx, day)
    except (RegistryError, ScoringError, ValidationError) as err:
        logger.error("5/6 scoring %s failed: %s", day, err)
        return False
    logger.info(
        "5/6 scored %s: %d events by %s; %d flagged (score >= %s) -> gold.predictions v%d",
        day, r.events, ", ".join(f"{a} v{v}" for a, v in r.models.items()), r.flagged,
        r.threshold, r.version,
    )  # fmt: skip
    top = read_predictions(lakehouse, day, top=3).to_pylist()
    entity_id, event_id = settings.dataset.entity_id, settings.dataset.event_id
    for row in top:
        logger.info(
            "    top: %s %s (%s) score %.3f decision %s", event_id, row[event_id],
            row[entity_id], row["score"], row["decision"],
        )  # fmt: skip
    if top:
        logger.info("    regrow lineage --entity %s --date %s:", top[0][entity_id], day)
        for line in describe(lineage(lakehouse, settings.dataset, top[0][entity_id], day),
                             settings.dataset):  # fmt: skip
            logger.info("      %s", line)
    return True


def report(ctx: StageContext) -> None:
    settings, lakehouse = ctx.settings, ctx.lakehouse
    logger.info("6/6 tables under %s:", lakehouse.root)
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
