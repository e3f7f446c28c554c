"""``replay``: the continual-learning scoreboard as a benchmark (issue P1): simulator
scenarios replayed under ``default`` (params.yaml's policy, warm starts on), ``daily_full``
and ``never``; the ratio of mean daily PR-AUC and of training compute, and the minutes a
one-policy replay takes.

``REGROW_BENCH_REPLAY_DAYS`` (default 365), ``REGROW_BENCH_REPLAY_EVENTS`` (5,000 a day)
and ``REGROW_BENCH_REPLAY_SCENARIOS`` (``concept_drift,covariate_shift,stable``) size it;
``make bench-quick`` runs it small. Labels arrive after 2 days on average within a 5-day
label window, so that a short replay still has matured days to score; the drift starts a
quarter of the way through the scored days (after the first model's cut-off, so that every
policy meets it).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml

from bench import BenchContext, Measurement, Target, benchmark, past_start
from bench.validation_cost import write_params

YEAR = 365
TARGET_MINUTES = 20.0  # a 365-day replay of one policy at 5,000 rows a day
QUALITY = 0.99  # default's mean PR-AUC / daily_full's
COMPUTE = 50.0  # daily_full's training compute / default's
GAIN = 0.10  # default's mean PR-AUC / never's - 1
POLICIES = ("default", "daily_full", "never")


@benchmark(
    "replay",
    "simulator scenarios replayed under default, daily_full and never: quality and training "
    "compute ratios, and the minutes of a one-policy replay (REGROW_BENCH_REPLAY_DAYS, 365)",
)
def run(ctx: BenchContext) -> Measurement:
    from regrow.orchestration.context import stage_context
    from regrow.replay.run import replay
    from regrow.settings import load_settings

    days = int(os.environ.get("REGROW_BENCH_REPLAY_DAYS", YEAR))
    events = int(os.environ.get("REGROW_BENCH_REPLAY_EVENTS", 5000))
    scenarios = os.environ.get(
        "REGROW_BENCH_REPLAY_SCENARIOS", "concept_drift,covariate_shift,stable"
    ).split(",")
    timings: dict[str, list[float]] = {}
    derived: dict[str, float] = {}
    targets: list[Target] = []
    notes: list[str] = []
    for scenario in scenarios:
        root = ctx.work_dir / f"replay-{scenario}"
        root.mkdir(parents=True, exist_ok=True)
        params = _params(root, days, events)
        settings = load_settings(params)
        stage_ctx = stage_context(settings, f"bench-replay-{scenario}", spark=ctx.spark)
        started = time.perf_counter()
        report = replay(stage_ctx, POLICIES, days, scenario=scenario, workdir=root / "replay",
                        progress=lambda line: None)  # fmt: skip
        total = time.perf_counter() - started
        board = {b["policy"]: b for b in report.scoreboard}
        default, full, never = board["default"], board["daily_full"], board["never"]
        data_s = report.seconds["data_stages"] + report.seconds["landing"]
        one_policy = data_s + default["wall_seconds"] + _first_model_s(report)
        minutes = one_policy / 60 if days >= YEAR else one_policy / days * YEAR / 60
        timings |= {f"{scenario}_total": [total], f"{scenario}_data_stages": [data_s]}
        timings |= {f"{scenario}_{p}_policy": [board[p]["wall_seconds"]] for p in POLICIES}
        quality = (default["mean_pr_auc"] or 0) / (full["mean_pr_auc"] or float("nan"))
        compute_cpu = full["train_cpu_seconds"] / max(default["train_cpu_seconds"], 1e-9)
        compute_work = full["train_work"] / max(default["train_work"], 1)
        gain = (default["mean_pr_auc"] or 0) / (never["mean_pr_auc"] or float("nan")) - 1
        derived |= {
            f"{scenario}_quality_default_vs_daily_full": quality,
            f"{scenario}_compute_daily_full_vs_default_cpu": compute_cpu,
            f"{scenario}_compute_daily_full_vs_default_work": compute_work,
            f"{scenario}_gain_default_vs_never": gain,
            f"{scenario}_one_policy_year_minutes": minutes,
        }
        for name in POLICIES:
            b = board[name]
            derived |= {
                f"{scenario}_{name}_mean_pr_auc": b["mean_pr_auc"] or 0.0,
                f"{scenario}_{name}_train_cpu_s": b["train_cpu_seconds"],
                f"{scenario}_{name}_retrains": b["retrains"],
                f"{scenario}_{name}_promotions": b["promotions"],
            }
        targets += [
            Target(f"{scenario}_quality", quality, QUALITY,
                   f"default's mean PR-AUC at least {QUALITY:.0%} of daily_full's"),
            Target(f"{scenario}_compute", compute_cpu, COMPUTE,
                   f"daily_full's training CPU-seconds at least {COMPUTE:.0f}x default's"),
        ]  # fmt: skip
        if scenario != "stable":  # nothing to gain over never when nothing changes
            targets.append(Target(f"{scenario}_gain", gain, GAIN,
                                  f"default at least {GAIN:.0%} better than never"))  # fmt: skip
        targets.append(Target(
            f"{scenario}_neg_one_policy_year_minutes", -minutes, -TARGET_MINUTES,
            f"a 365-day replay of one policy at 5,000 rows a day in at most "
            f"{TARGET_MINUTES:.0f} minutes (recorded negated; "
            + ("measured" if days >= YEAR else f"projected from {days} days") + ")",
        ))  # fmt: skip
        notes.append(f"{scenario}: scoreboard {report.page}; scored from {report.scored_from}")
    return Measurement(
        parameters={
            "days": days,
            "events_per_day": events,
            "scenarios": scenarios,
            "policies": list(POLICIES),
        },  # fmt: skip
        timings=timings,
        derived=derived,
        targets=targets,
        notes=notes,
    )


def _first_model_s(report) -> float:
    return float(report.first_model.get("seconds", 0.0))


def _params(root: Path, days: int, events: int) -> Path:
    from regrow.replay.run import default_warmup
    from regrow.settings import load_settings

    path = write_params(root)
    raw = yaml.safe_load(path.read_text())
    raw["dataset"]["label_delay_days"] = 5
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    settings = load_settings(path)
    warmup = default_warmup(settings)
    start = past_start(settings.simulator.start_date, days)
    raw["simulator"] |= {"days": days, "events_per_day": events, "mean_label_delay_days": 2.0,
                         "start_date": start.isoformat(),
                         "drift_onset_day": warmup + (days - warmup) // 4,
                         "n_entities": max(3000, events)}  # fmt: skip
    raw["mlflow"] = {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
                     "artifact_location": str(root / "mlartifacts")}  # fmt: skip
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
