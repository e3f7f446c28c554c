"""warm_start: stateful retraining (continue the champion) against a stateless retrain.

Acceptance: training time of a warm start is a fraction of the stateless retrain on the
same window. The simulator (scenario ``stable``) makes 30 days of ``ctx.rows / 30``
events a day, held in memory (no Spark: training reads a snapshot's frames). Two
snapshots are cut the way ``build_trainset`` cuts them (2 test days, 2 validation days,
the rest train):

- the *parent* snapshot, days 1-24: a stateless model is trained on it (untimed) and is
  the champion a warm start continues;
- the *new* snapshot, days 1-30: what a retrain six days later sees.

Timed, per repetition: ``stateless`` = ``regrow.model.training.train`` on the new snapshot from
scratch (up to ``train.num_boost_round`` trees, early stopping); ``warm_start`` = the
same call with the parent (only the rows after the parent's training window, at most
``train.warm_start.new_trees`` trees). Both models' PR-AUC on the new test split is
recorded beside the times, so a fast warm start that learned nothing would show.
"""

from __future__ import annotations

import datetime as dt
import sys

from bench import BENCH_DIR, BenchContext, Measurement, Target, benchmark, repeat

REPO = BENCH_DIR.parent
DAYS, PARENT_DAYS = 30, 24
MIN_SPEEDUP = 2.0  # "a fraction": stateless / warm start >= 2


@benchmark(
    "warm_start", "train (warm start from the champion) vs train (stateless) on the same window"
)
def run(ctx: BenchContext) -> Measurement:
    sys.path.insert(0, str(REPO))
    from regrow.data.trainset import SPLITS
    from regrow.data.transform import Transform
    from regrow.model.evaluation import labels_of, metrics
    from regrow.model.training import STATELESS, WARM_START, Parent, train
    from regrow.settings import load_settings
    from tests.snapshots import simulated_days

    per_day = max(1000, ctx.rows // DAYS)
    settings = load_settings(
        REPO / "params.yaml", simulator={"scenario": "stable", "events_per_day": per_day}
    )
    dataset, cfg = settings.dataset, settings.train
    events = simulated_days(settings, 0, DAYS - 1)

    def cut(last_day: int) -> tuple[dict, Transform]:
        days = sorted(events["event_date"].unique())[:last_day]
        frame = events[events["event_date"].isin(days)]
        name = {
            d: "test" if d in days[-2:] else "validation" if d in days[-4:-2] else "train"
            for d in days
        }
        splits = {
            s: frame[frame["event_date"].map(name) == s].reset_index(drop=True) for s in SPLITS
        }
        transform = Transform.fit(
            splits["train"], [*dataset.numeric_features, *dataset.boolean_features],
            list(dataset.categorical_features), settings.split.rare_category_min_count,
        )  # fmt: skip
        return splits, transform

    old, old_transform = cut(PARENT_DAYS)
    new, new_transform = cut(DAYS)
    cutoff = dt.date(2026, 1, 1) + dt.timedelta(days=DAYS)
    first = train(old, old_transform, dataset, cfg, cutoff, mode=STATELESS)
    parent = Parent(first.model, "1", old["train"][dataset.event_timestamp].max())
    results = {}

    def stateless() -> None:
        results[STATELESS] = train(new, new_transform, dataset, cfg, cutoff, mode=STATELESS)

    def warm() -> None:
        results[WARM_START] = train(new, new_transform, dataset, cfg, cutoff, parent, WARM_START)

    timings = {
        STATELESS: repeat(stateless, ctx.repetitions),
        WARM_START: repeat(warm, ctx.repetitions),
    }
    med = {k: sorted(v)[len(v) // 2] for k, v in timings.items()}
    y = labels_of(new["test"], dataset)
    quality = {k: metrics(y, r.model.predict(new["test"]))["pr_auc"] for k, r in results.items()}
    speedup = med[STATELESS] / med[WARM_START]
    return Measurement(
        parameters={
            "events_per_day": per_day,
            "days": DAYS,
            "parent_days": PARENT_DAYS,
            "new_train_rows": len(new["train"]),
            "warm_start_rows": results[WARM_START].facts["train_rows"],
            "stateless_trees": results[STATELESS].model.trees,
            "parent_trees": first.model.trees,
            "warm_start_trees_added": results[WARM_START].facts["trees_added"],
            "train_params": dict(cfg.params),
            "repetitions": ctx.repetitions,
        },
        timings=timings,
        derived={
            "warm_over_stateless_time": med[WARM_START] / med[STATELESS],
            "stateless_over_warm_speedup": speedup,
            "pr_auc_stateless": quality[STATELESS],
            "pr_auc_warm_start": quality[WARM_START],
            "pr_auc_parent_on_new_test": metrics(y, first.model.predict(new["test"]))["pr_auc"],
        },
        targets=[
            Target(
                "stateless_over_warm_speedup",
                speedup,
                MIN_SPEEDUP,
                "warm start takes at most half the time of a stateless retrain",
            )
        ],  # fmt: skip
        notes=[
            "XGBoost hist with the train section of params.yaml; early stopping on the "
            "validation split's log loss for both.",
            "Times are xgb.train plus the transform of the rows (what regrow.model.training.train "
            "does); MLflow logging and registration are not included.",
        ],
    )
