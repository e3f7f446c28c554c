"""A challenger: trained on a training-set snapshot, logged to MLflow, registered, and
evaluated against the champion on the same rows.

- :func:`train_challenger`: snapshot -> model (stateless or warm start) -> MLflow run
  (params, metrics, baselines, manifest, plots, slice table, the model) -> registered
  version with lineage tags and the ``challenger`` alias; the model is also written to
  ``train.model_dir`` for DVC;
- :func:`evaluate_challenger`: champion and challenger on the same rows (the backtest
  window and the pinned test set), baselines, behavioral tests; writes ``metrics.json`` and
  the plots DVC compares.

Both return dataclasses; ``as_dict``/``from_dict`` are the JSON/XCom edge.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regrow.catalog import CHALLENGER, CHAMPION
from regrow.data.trainset import TEST, TRAIN, TRANSFORM, VALIDATION, TrainsetError, load_trainset
from regrow.model.evaluation import (
    BACKTEST,
    PINNED,
    Evaluation,
    evaluate,
    evaluate_baselines,
    labels_of,
)
from regrow.model.training import WARM_START, Model, TrainResult, baselines, train
from regrow.model.versioning import lineage_tags
from regrow.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from regrow.stage import StageContext

logger = logging.getLogger(__name__)

MODEL_INFO = "model.json"
PINNED_FILE, PINNED_INFO = "test.parquet", "pinned.json"


@dataclass(frozen=True)
class Challenger:
    """A registered challenger: its version, run and snapshot, what training did
    (``training``: mode, trees, rows, metrics...) and its lineage tags."""

    registered_model: str
    version: str
    run_id: str
    model_uri: str
    trainset: str
    pinned_rows_dropped: dict[str, int]
    pinned_rows_in_validation: int
    training: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Flat, as ``model.json`` and XCom have it: the training facts at the top level."""
        out = asdict(self)
        return {**{k: v for k, v in out.items() if k != "training"}, **self.training}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Challenger:
        named = {f.name for f in fields(cls)} - {"training"}
        return cls(
            **{k: v for k, v in data.items() if k in named},
            training={k: v for k, v in data.items() if k not in named},
        )


@dataclass(frozen=True)
class EvaluationReport:
    """Challenger and champion evaluated on the same rows, with the baselines."""

    registered_model: str
    challenger: str
    challenger_run_id: str | None
    champion: str | None
    already_champion: bool
    trainset: dict[str, Any]  # path, cutoff_date, sha256
    challenger_evaluation: Evaluation
    champion_evaluation: Evaluation | None
    baselines: dict[str, Any]
    mode: str | None
    trigger: str

    def primary(self, metric: str) -> tuple[float | None, float | None]:
        """The backtest ``metric`` of the challenger and of the champion (None if none)."""
        mine = self.challenger_evaluation.sets.get(BACKTEST, {}).get(metric)
        theirs = None
        if self.champion_evaluation is not None:
            theirs = self.champion_evaluation.sets.get(BACKTEST, {}).get(metric)
        return mine, theirs

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        del out["challenger_evaluation"], out["champion_evaluation"]
        out["evaluation"] = {
            "challenger": self.challenger_evaluation.to_dict(),
            "champion": self.champion_evaluation.to_dict() if self.champion_evaluation else None,
        }
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationReport:
        rest = {k: v for k, v in data.items() if k != "evaluation"}
        evaluation = data["evaluation"]
        champion = evaluation.get("champion")
        return cls(
            **rest,
            challenger_evaluation=Evaluation(**evaluation["challenger"]),
            champion_evaluation=Evaluation(**champion) if champion else None,
        )


# ------------------------------------------------------------------- pinned test set
def pinned_test_set(
    settings: Settings, snapshot: Path, manifest: Mapping[str, Any], test: pd.DataFrame
) -> pd.DataFrame:
    """The static test set; pinned from this snapshot's test split the first time.

    Its rows are never trained on afterwards (:func:`train_challenger` drops them), so
    every later model is judged on data it has not seen.
    """
    import pandas as pd

    folder = Path(settings.resolve(settings.evaluate.pinned_test_set))
    if not (folder / PINNED_FILE).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        test.to_parquet(folder / PINNED_FILE, index=False)
        info = {
            "pinned_at": dt.datetime.now(dt.UTC).isoformat(),
            "from_snapshot": str(snapshot),
            "cutoff_date": manifest["cutoff_date"],
            "trainset_sha256": manifest["content_hash"],
            "rows": len(test),
        }
        (folder / PINNED_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        logger.info(
            "pinned %d test rows of cut-off %s at %s", len(test), manifest["cutoff_date"], folder
        )
    return pd.read_parquet(folder / PINNED_FILE)


# ---------------------------------------------------------------------------- train
def train_challenger(
    ctx: StageContext,
    trainset: str | Path | None = None,
    trigger: str = "manual",
    mode: str | None = None,
) -> Challenger:
    """Train on a snapshot, log the run, register the version as ``challenger``.

    Returns:
        The new version and its facts (run id, mode, trees, metrics ...), also written to
        ``train.model_dir/model.json``.

    Raises:
        TrainingError: the snapshot cannot make a model (nothing is logged or registered).
        RegistryError: MLflow cannot be reached (no alias moves).
    """
    import mlflow

    settings, registry = ctx.settings, ctx.registry
    dataset = settings.dataset
    path = Path(trainset or settings.resolve(settings.split.output_dir))
    splits, manifest, transform = load_trainset(path)
    registry.check()
    pinned = pinned_test_set(settings, path, manifest, splits[TEST])
    # Pinned rows are never trained on. In the validation split they stay: they only tell
    # early stopping when to stop, and a later snapshot's validation days are often the
    # very days pinned earlier (dropping them could leave nothing to stop on).
    held_out = set(pinned[dataset.event_id])
    keep = ~splits[TRAIN][dataset.event_id].isin(held_out)
    dropped = {TRAIN: int((~keep).sum())}
    splits[TRAIN] = splits[TRAIN][keep].reset_index(drop=True)
    pinned_in_validation = int(splits[VALIDATION][dataset.event_id].isin(held_out).sum())

    champion = registry.alias(CHAMPION)
    wants_warm = (mode or settings.train.mode) == WARM_START
    parent = registry.parent(champion) if wants_warm and champion else None
    cutoff = dt.date.fromisoformat(manifest["cutoff_date"])
    result = train(splits, transform, dataset, settings.train, cutoff, parent, mode)  # may raise
    model = result.model
    base = baselines(splits[TRAIN], transform, dataset, settings.train)
    test = splits[TEST]
    evaluation = evaluate(model, {BACKTEST: test, PINNED: pinned}, dataset, settings.evaluate,
                          with_curves=True)  # fmt: skip
    baseline_metrics = evaluate_baselines(
        base, transform.apply(test), labels_of(test, dataset), settings.evaluate.calibration_bins
    )
    lineage = lineage_tags(settings, path, manifest, result, trigger, champion)
    name = f"{result.mode}-{manifest['cutoff_date']}"
    with registry.run(name, tags={"trigger": trigger, "mode": result.mode}) as run_id:
        params = {**settings.train.params, **{f"train.{k}": v for k, v in {
            "mode": result.mode, "seed": settings.train.seed,
            "num_boost_round": settings.train.num_boost_round,
            "early_stopping_rounds": settings.train.early_stopping_rounds,
            "imbalance": settings.train.imbalance,
        }.items()}, "split.cutoff_date": manifest["cutoff_date"],
            "split.window_days": manifest["window"]["days"]}  # fmt: skip
        mlflow.log_params(params)
        mlflow.log_metrics(_flat_metrics(result, evaluation, baseline_metrics))
        mlflow.log_dict(dict(manifest), "trainset/manifest.json")
        mlflow.log_dict(evaluation.to_dict(), "evaluation/challenger.json")
        mlflow.log_dict(baseline_metrics, "evaluation/baselines.json")
        mlflow.log_dict({b.name: {"description": b.description, **b.params} for b in base},
                        "evaluation/baseline_models.json")  # fmt: skip
        _log_slices(evaluation)
        _log_plots(model, evaluation)
        mlflow.set_tags({k: v for k, v in lineage.items() if v is not None})
        example = test.head(5) if len(test) else splits[TRAIN].head(5)
        model_uri, model_id = registry.log_model(model, example)
        version = registry.register(model_uri, model_id, run_id, {**lineage, "run_id": run_id})
    registry.set_alias(CHALLENGER, version.version)
    challenger = Challenger(
        registered_model=registry.name,
        version=version.version,
        run_id=run_id,
        model_uri=model_uri,
        trainset=str(path),
        pinned_rows_dropped=dropped,
        pinned_rows_in_validation=pinned_in_validation,
        training=dict(result.facts),
        lineage=lineage,
    )
    _write_model_dir(settings, model, challenger)
    logger.info(
        "registered %s v%s (%s, %d trees) from run %s; alias challenger",
        registry.name, version.version, result.mode, model.trees, run_id,
    )  # fmt: skip
    return challenger


def _flat_metrics(
    result: TrainResult, evaluation: Evaluation, baseline_metrics: Mapping[str, Mapping]
) -> dict[str, float]:
    out = {k: float(v) for k, v in result.facts.items()
           if isinstance(v, int | float) and not isinstance(v, bool)}  # fmt: skip
    for set_name, values in evaluation.sets.items():
        out |= {f"{set_name}_{k}": float(v) for k, v in values.items()
                if isinstance(v, int | float) and not isinstance(v, bool)}  # fmt: skip
    for name, values in baseline_metrics.items():
        out |= {f"baseline_{name}_{k}": float(v) for k, v in values.items() if v is not None}
    return out


def _log_slices(evaluation: Evaluation) -> None:
    import mlflow
    import pandas as pd

    if evaluation.slices:
        mlflow.log_table(pd.DataFrame(evaluation.slices), "evaluation/slices.json")


def _log_plots(model: Model, evaluation: Evaluation) -> None:
    """ROC, PR, reliability and feature-importance figures, as PNG artifacts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    c = evaluation.curves
    figures = {}
    if c.get("roc"):
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot([p["fpr"] for p in c["roc"]], [p["tpr"] for p in c["roc"]], label="model")
        ax.plot([0, 1], [0, 1], "--", color="grey", label="random")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (backtest)")
        ax.legend()
        figures["roc.png"] = fig
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot([p["recall"] for p in c["pr"]], [p["precision"] for p in c["pr"]])
        ax.set(xlabel="recall", ylabel="precision", title="precision-recall (backtest)")
        figures["pr.png"] = fig
    if c.get("reliability"):
        fig, ax = plt.subplots(figsize=(5, 5))
        rel = c["reliability"]
        ax.plot([r["mean_score"] for r in rel], [r["positive_rate"] for r in rel], "o-")
        ax.plot([0, 1], [0, 1], "--", color="grey")
        ax.set(xlabel="mean score", ylabel="observed positive rate", title="reliability")
        figures["calibration.png"] = fig
    gain = model.booster.get_score(importance_type="gain")
    if gain:
        top = sorted(gain.items(), key=lambda kv: kv[1])[-20:]
        fig, ax = plt.subplots(figsize=(6, 0.3 * len(top) + 1.5))
        ax.barh([k for k, _ in top], [v for _, v in top])
        ax.set(xlabel="gain", title="feature importance")
        fig.tight_layout()
        figures["feature_importance.png"] = fig
    for name, fig in figures.items():
        mlflow.log_figure(fig, f"plots/{name}")
        plt.close(fig)


def _write_model_dir(settings: Settings, model: Model, challenger: Challenger) -> Path:
    out = Path(settings.resolve(settings.train.model_dir))
    out.mkdir(parents=True, exist_ok=True)
    model.booster.save_model(str(out / "model.ubj"))
    (out / TRANSFORM).write_text(
        json.dumps(model.transform.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    (out / MODEL_INFO).write_text(
        json.dumps(challenger.as_dict(), indent=2, default=str) + "\n", encoding="utf-8"
    )
    return out


def trained_model_info(settings: Settings) -> dict[str, Any]:
    """``train.model_dir/model.json`` of the last ``regrow train``."""
    path = Path(settings.resolve(settings.train.model_dir)) / MODEL_INFO
    if not path.is_file():
        raise TrainsetError(f"no trained model at {path.parent}: run regrow train first")
    return json.loads(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------- evaluate
def evaluate_challenger(
    ctx: StageContext,
    version: str | None = None,
    trainset: str | Path | None = None,
    write_files: bool = True,
) -> EvaluationReport:
    """Champion and challenger on the same rows: the snapshot's test split (the newest
    matured days: the backtest) and the pinned test set.

    Args:
        version: the challenger; default: the version the last ``regrow train`` registered.
        write_files: write ``evaluate.metrics_file`` and the plot data in ``plots_dir``.

    Returns:
        The versions, both evaluations, the baselines and the snapshot.
    """
    settings, registry = ctx.settings, ctx.registry
    dataset, cfg = settings.dataset, settings.evaluate
    registry.check()
    version = version or trained_model_info(settings)["version"]
    path = Path(trainset or settings.resolve(settings.split.output_dir))
    splits, manifest, transform = load_trainset(path)
    pinned = pinned_test_set(settings, path, manifest, splits[TEST])
    sets = {BACKTEST: splits[TEST], PINNED: pinned}
    challenger = registry.version(version)
    champion = registry.alias(CHAMPION)
    already = champion is not None and champion.version == challenger.version
    if already:
        champion = None  # re-evaluating the champion itself: against the baselines only
    challenger_eval = evaluate(
        registry.load(challenger.version), sets, dataset, cfg, with_curves=True
    )
    champion_eval = (
        evaluate(registry.load(champion.version), sets, dataset, cfg) if champion else None
    )
    train = splits[TRAIN][~splits[TRAIN][dataset.event_id].isin(set(pinned[dataset.event_id]))]
    base = baselines(train, transform, dataset, settings.train)
    test = splits[TEST]
    baseline_metrics = evaluate_baselines(
        base, transform.apply(test), labels_of(test, dataset), cfg.calibration_bins
    )
    report = EvaluationReport(
        registered_model=registry.name,
        challenger=challenger.version,
        challenger_run_id=challenger.run_id,
        champion=challenger.version if already else (champion.version if champion else None),
        already_champion=already,
        trainset={
            "path": str(path),
            "cutoff_date": manifest["cutoff_date"],
            "sha256": manifest["content_hash"],
        },
        challenger_evaluation=challenger_eval,
        champion_evaluation=champion_eval,
        baselines=baseline_metrics,
        mode=challenger.tags.get("mode"),
        trigger=challenger.tags.get("trigger", "manual"),
    )
    if write_files:
        _write_dvc_metrics(settings, challenger_eval, baseline_metrics)
    return report


def _write_dvc_metrics(
    settings: Settings, evaluation: Evaluation, baseline_metrics: Mapping[str, Mapping]
) -> None:
    """``metrics.json`` and ``plots/*.json``: the challenger's own numbers only, so that the
    same data and seed give the same files (no timing, no champion)."""
    cfg = settings.evaluate
    metrics = {
        "challenger": evaluation.sets,
        "baselines": dict(baseline_metrics),
        "behavioral": {
            t["name"]: {"passed": t["passed"], "value": round(t["value"], 6)}
            for t in evaluation.behavioral
        },  # fmt: skip
    }
    path = Path(settings.resolve(cfg.metrics_file))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_rounded(metrics), indent=2) + "\n", encoding="utf-8")
    plots = Path(settings.resolve(cfg.plots_dir))
    plots.mkdir(parents=True, exist_ok=True)
    for name in ("roc", "pr", "reliability"):
        data = _rounded(evaluation.curves.get(name, []))
        (plots / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    (plots / "slices.json").write_text(
        json.dumps(_rounded(evaluation.slices), indent=1) + "\n", encoding="utf-8"
    )


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
