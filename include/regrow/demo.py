"""``make demo``: the whole pipeline as far as it exists, on params.yaml.

Simulates the configured days of landing files, runs the ``regrow_ingest`` DAG over them
with real Airflow (one ``airflow dags test`` run per day, SQLite metadata DB in
``.airflow/``), then prints every table and where the data lives. Running it twice gives
the same row counts: each day's run replaces that day's partitions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import Queue

from regrow import simulate
from regrow.airflow_local import airflow_env, dags_test, ensure_db
from regrow.lakehouse import Lakehouse
from regrow.settings import find_params, load_settings

logger = logging.getLogger("regrow.demo")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=None, help="params.yaml (default: ./params.yaml)")
    parser.add_argument(
        "--days", type=int, default=None, help="days to simulate (default: simulator.days)"
    )
    parser.add_argument(
        "--airflow-home", default=".airflow", help="AIRFLOW_HOME for the local runs"
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="days run at once (each worker has its own AIRFLOW_HOME/SQLite DB under --airflow-home)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    params = find_params(args.params)
    settings = load_settings(params)
    landing_root = settings.resolve(settings.landing.path)
    started = time.monotonic()

    summary = simulate.write_landing(
        settings.dataset, settings.simulator, settings.landing, landing_root, args.days
    )
    logger.info(
        "1/3 simulated %d day(s) of '%s': %d events, %d labels -> %s",
        len(summary.days),
        settings.simulator.scenario,
        summary.rows["events"],
        summary.rows["labels"],
        landing_root,
    )

    homes = [
        Path(args.airflow_home).resolve() / f"worker-{k}" for k in range(max(1, args.parallel))
    ]
    envs = [airflow_env(home, params=params) for home in homes]
    with ThreadPoolExecutor(len(envs)) as pool:
        list(pool.map(ensure_db, envs))
    logger.info(
        "2/3 running the regrow_ingest DAG for each day, %d at a time (AIRFLOW_HOME=%s)",
        len(envs),
        ", ".join(str(h) for h in homes),
    )
    # Days are independent (each run replaces its own partitions), so they may run at once;
    # each worker has its own SQLite metadata DB, which does not take concurrent writers.
    free: Queue = Queue()
    for env in envs:
        free.put(env)

    def run(day: dt.date) -> tuple[dt.date, int, float, str]:
        env = free.get()
        try:
            t0 = time.monotonic()
            result = dags_test("regrow_ingest", day, env)
            return day, result.returncode, time.monotonic() - t0, result.stdout or ""
        finally:
            free.put(env)

    failed: list[dt.date] = []
    with ThreadPoolExecutor(len(envs)) as pool:
        for i, (day, code, seconds, log) in enumerate(pool.map(run, summary.days), start=1):
            state = "ok" if code == 0 else f"FAILED (exit {code})"
            logger.info(
                "    [%2d/%d] regrow_ingest %s: %s in %.0fs",
                i,
                len(summary.days),
                day,
                state,
                seconds,
            )
            if code != 0:
                failed.append(day)
                log_file = homes[0].parent / f"demo-failed-{day}.log"
                log_file.write_text(log)
                logger.info("        its log: %s", log_file)

    lakehouse = Lakehouse(settings.lakehouse, settings.resolve(settings.lakehouse.root))
    logger.info("3/3 tables under %s:", lakehouse.root)
    for info in lakehouse.tables():
        logger.info("    %-18s v%-4d %8d rows  %s", info.table, info.version, info.rows, info.uri)
    if lakehouse.exists("bronze.quarantine"):
        for row in lakehouse.sql(
            "SELECT source_kind, reason, count(*) AS n FROM bronze.quarantine GROUP BY 1, 2 ORDER BY n DESC LIMIT 5"
        ).to_pylist():
            logger.info("    quarantined %s: %d x %s", row["source_kind"], row["n"], row["reason"])
    logger.info(
        'done in %.0fs. Query the tables: regrow query "SELECT event_date, count(*) FROM bronze.events GROUP BY 1"',
        time.monotonic() - started,
    )
    if failed:
        logger.error("the DAG failed for %s", ", ".join(map(str, failed)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
