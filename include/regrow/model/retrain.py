"""The retrain loop: train a challenger, evaluate it against the champion, gate, promote.

Each step is one function that the CLI, the DVC stages and the ``regrow_retrain`` DAG call:

- :func:`train_challenger`: training set snapshot -> model (stateless or warm start) ->
  MLflow run (params, metrics, baselines, manifest, plots, slice table, the model) ->
  registered version with lineage tags and the ``challenger`` alias; the model is also
  written to ``train.model_dir`` for DVC;
- :func:`evaluate_challenger`: champion and challenger on the same rows (the backtest
  window and the pinned test set), baselines, behavioral tests; writes ``metrics.json`` and
  the plots DVC compares;
- :func:`decide`: the gate, then promote or keep; one ``gold.decisions`` row and MLflow tags;
- :func:`force_promote` and :func:`rollback`: the manual moves, recorded the same way.

Nothing is promoted, and no alias moves, unless the whole step succeeded: a failure to
reach the registry leaves every alias where it was.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regrow.catalog import CHALLENGER, CHAMPION
from regrow.data.trainset import TEST, TRAIN, TRANSFORM, VALIDATION, TrainsetError, load_trainset
from regrow.model.decisions import FORCE_PROMOTE, KEEP, PROMOTE, ROLLBACK, Decision, record
from regrow.model.evaluation import (
    BACKTEST,
    PINNED,
    Evaluation,
    GateResult,
    evaluate,
    evaluate_baselines,
    gate,
    labels_of,
)
from regrow.model.registry import PREVIOUS_CHAMPION, Registry, Version
from regrow.model.training import WARM_START, Model, TrainResult, baselines, train
from regrow.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from regrow.storage.lakehouse import Lakehouse

logger = logging.getLogger(__name__)

MODEL_INFO = "model.json"
PINNED_FILE, PINNED_INFO = "test.parquet", "pinned.json"


class PromotionError(RuntimeError):
    """A manual promotion or rollback cannot be done (no such version, no previous champion)."""


# ------------------------------------------------------------------------- lineage
def git_commit() -> str:
    """The commit of regrow's code: ``$REGROW_GIT_COMMIT`` (set it in images built without
    .git), else ``git rev-parse HEAD`` where the package lives (``-dirty`` when tracked files
    changed), else ``unknown``."""
    import os

    if os.environ.get("REGROW_GIT_COMMIT"):
        return os.environ["REGROW_GIT_COMMIT"]
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def dvc_md5(path: str | Path) -> str:
    """DVC's hash of a directory (``<md5>.dir``): the id ``dvc.lock`` records for it and
    ``dvc checkout``/``dvc get`` fetch it by, computed with DVC's own library."""
    from dvc.fs import LocalFileSystem
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.memory import MemoryFileSystem

    odb = HashFileDB(MemoryFileSystem(), "/regrow-hash")
    _, _, obj = build(odb, str(Path(path).resolve()), LocalFileSystem(), "md5")
    return obj.hash_info.value


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


# ------------------------------------------------------------------------- skip rule
def retrain_needed(
    settings: Settings, trainset: str | Path | None = None, force: bool = False,
    registry: Registry | None = None,
) -> tuple[bool, str]:  # fmt: skip
    """Whether a scheduled retrain has anything new to learn from, and why.

    A snapshot with the same content as the one the champion (or the challenger already
    kept in shadow) was trained on teaches nothing new: the run is skipped unless ``force``
    (the DAG's ``force_retrain``).
    """
    path = Path(trainset or settings.resolve(settings.split.output_dir))
    _, manifest, _ = load_trainset(path)
    if force:
        return True, "forced (force_retrain)"
    registry = registry or Registry(settings)
    champion = registry.alias(CHAMPION)
    if champion is None:
        return True, "no champion yet"
    for alias, version in ((CHAMPION, champion), (CHALLENGER, registry.alias(CHALLENGER))):
        if version is not None and version.tags.get("trainset_sha256") == manifest["content_hash"]:
            return False, (
                f"{alias} v{version.version} was trained on this very training set "
                f"({manifest['content_hash'][:19]}..., cut-off {manifest['cutoff_date']}): "
                f"nothing new"
            )
    return True, (
        f"new training set (cut-off {manifest['cutoff_date']}; champion v{champion.version} "
        f"has cut-off {champion.tags.get('cutoff_date')})"
    )


def write_report(settings: Settings, facts: Mapping[str, Any], outcome: Mapping[str, Any]) -> Path:
    """A short markdown report of one retrain in ``reports_dir`` (also the DAG's last task)."""
    out = Path(settings.resolve(settings.reports_dir)) / "retrain"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"retrain-v{facts['version']}.md"
    lines = [
        f"# {facts['registered_model']} v{facts['version']}: "
        + ("promoted" if outcome["promoted"] else "kept as challenger"),
        "",
        f"- mode: {facts['mode_reason']}",
        f"- trigger: {facts['lineage']['trigger']}",
        f"- trees: {facts['trees']} ({facts['trees_added']} new), {facts['train_rows']} rows",
        f"- training set: {facts['trainset']} ({facts['lineage']['trainset_sha256']}, "
        f"dvc {facts['lineage']['dvc_md5']})",
        f"- MLflow run: {facts['run_id']}",
        f"- champion now: v{outcome['champion']}",
        f"- reason: {outcome['reason']}",
        "",
        "| check | passed | detail |",
        "|---|---|---|",
        *(f"| {c['check']} | {'yes' if c['passed'] else 'NO'} | {c['detail']} |"
          for c in outcome["checks"]),
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def snapshot_trainset(settings: Settings, push: bool = True) -> dict[str, Any]:
    """Version the training set with DVC: ``dvc commit`` of the ``trainset`` stage (the
    snapshot goes into DVC's cache and dvc.lock) and ``dvc push`` to the default remote.

    Outside a DVC repository nothing is versioned and the result says so; the snapshot's
    DVC hash is computed either way (it is what lineage records).
    """
    path = Path(settings.resolve(settings.split.output_dir))
    load_trainset(path)  # a clear error when there is no snapshot
    md5 = dvc_md5(path)
    root = Path(settings.base_dir)
    if not (root / ".dvc").is_dir() or not (root / "dvc.yaml").is_file():
        logger.warning("%s is not a DVC repository: the snapshot %s is not versioned", root, md5)
        return {"dvc_md5": md5, "committed": False, "pushed": False}
    run = [sys.executable, "-m", "dvc"]
    subprocess.run([*run, "commit", "--force", "trainset"], cwd=root, check=True)
    pushed = False
    if push:
        subprocess.run([*run, "push", "trainset"], cwd=root, check=True)
        pushed = True
    return {"dvc_md5": md5, "committed": True, "pushed": pushed}


# ---------------------------------------------------------------------------- train
def train_challenger(
    settings: Settings,
    trainset: str | Path | None = None,
    trigger: str = "manual",
    mode: str | None = None,
    registry: Registry | None = None,
) -> dict[str, Any]:
    """Train on a snapshot, log the run, register the version as ``challenger``.

    Returns:
        The facts of the new version (version, run id, mode, trees, metrics ...), also
        written to ``train.model_dir/model.json``.

    Raises:
        TrainingError: the snapshot cannot make a model (nothing is logged or registered).
        RegistryError: MLflow cannot be reached (no alias moves).
    """
    import mlflow

    dataset = settings.dataset
    path = Path(trainset or settings.resolve(settings.split.output_dir))
    splits, manifest, transform = load_trainset(path)
    registry = registry or Registry(settings)
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
    lineage = _lineage(settings, path, manifest, result, trigger, champion)
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
    facts = {
        "registered_model": registry.name,
        "version": version.version,
        "run_id": run_id,
        "model_uri": model_uri,
        "trainset": str(path),
        "pinned_rows_dropped": dropped,
        "pinned_rows_in_validation": pinned_in_validation,
        **result.facts,
        "lineage": lineage,
    }
    _write_model_dir(settings, model, facts)
    logger.info(
        "registered %s v%s (%s, %d trees) from run %s; alias challenger",
        registry.name, version.version, result.mode, model.trees, run_id,
    )  # fmt: skip
    return facts


def _lineage(
    settings: Settings, path: Path, manifest: Mapping[str, Any], result: TrainResult,
    trigger: str, champion: Version | None,
) -> dict[str, Any]:  # fmt: skip
    parent = result.facts.get("parent_version")
    in_a_row = 0
    if parent and champion:
        in_a_row = int(champion.tags.get("warm_starts_in_a_row", "0")) + 1
    return {
        "mode": result.mode,
        "mode_reason": result.mode_reason,
        "parent_version": parent,
        "warm_starts_in_a_row": in_a_row,
        "trigger": trigger,
        "cutoff_date": manifest["cutoff_date"],
        "train_window": f"{result.facts['train_first_event']}..{result.facts['train_last_event']}",
        "train_last_event": result.facts["train_last_event"],
        "delta_versions": json.dumps(manifest.get("tables", {}), sort_keys=True),
        "trainset_sha256": manifest["content_hash"],
        "dvc_md5": dvc_md5(path),
        "git_commit": git_commit(),
    }


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


def _write_model_dir(settings: Settings, model: Model, facts: Mapping[str, Any]) -> Path:
    out = Path(settings.resolve(settings.train.model_dir))
    out.mkdir(parents=True, exist_ok=True)
    model.booster.save_model(str(out / "model.ubj"))
    (out / TRANSFORM).write_text(
        json.dumps(model.transform.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    (out / MODEL_INFO).write_text(json.dumps(facts, indent=2, default=str) + "\n", encoding="utf-8")
    return out


def trained_model_info(settings: Settings) -> dict[str, Any]:
    """``train.model_dir/model.json`` of the last ``regrow train``."""
    path = Path(settings.resolve(settings.train.model_dir)) / MODEL_INFO
    if not path.is_file():
        raise TrainsetError(f"no trained model at {path.parent}: run regrow train first")
    return json.loads(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------- evaluate
def evaluate_challenger(
    settings: Settings,
    version: str | None = None,
    trainset: str | Path | None = None,
    registry: Registry | None = None,
    write_files: bool = True,
) -> dict[str, Any]:
    """Champion and challenger on the same rows: the snapshot's test split (the newest
    matured days: the backtest) and the pinned test set.

    Args:
        version: the challenger; default: the version the last ``regrow train`` registered.
        write_files: write ``evaluate.metrics_file`` and the plot data in ``plots_dir``.

    Returns:
        A JSON-able report: versions, both evaluations, baselines, the snapshot.
    """
    dataset, cfg = settings.dataset, settings.evaluate
    registry = registry or Registry(settings)
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
    report = {
        "registered_model": registry.name,
        "challenger": challenger.version,
        "challenger_run_id": challenger.run_id,
        "champion": challenger.version if already else (champion.version if champion else None),
        "already_champion": already,
        "trainset": {
            "path": str(path),
            "cutoff_date": manifest["cutoff_date"],
            "sha256": manifest["content_hash"],
        },  # fmt: skip
        "evaluation": {
            "challenger": challenger_eval.to_dict(),
            "champion": champion_eval.to_dict() if champion_eval else None,
        },
        "baselines": baseline_metrics,
        "mode": challenger.tags.get("mode"),
        "trigger": challenger.tags.get("trigger", "manual"),
    }
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


# --------------------------------------------------------------------------- decide
def decide(
    settings: Settings,
    report: Mapping[str, Any],
    lakehouse: Lakehouse,
    registry: Registry | None = None,
) -> dict[str, Any]:
    """Gate the challenger of an evaluation report; promote it or keep the champion.

    The outcome is tagged on the challenger's run and version before any alias moves, so a
    registry failure leaves the aliases as they were; a promotion whose ``gold.decisions``
    row cannot be written is undone.
    """
    registry = registry or Registry(settings)
    if report.get("already_champion"):
        version = report["challenger"]
        return {"promoted": False, "version": version, "champion": version, "checks": [],
                "reason": f"v{version} is already the champion: nothing to decide",
                "decision_id": None}  # fmt: skip
    evaluation = report["evaluation"]
    challenger = Evaluation(**evaluation["challenger"])
    champion = Evaluation(**evaluation["champion"]) if evaluation["champion"] else None
    result = gate(challenger, champion, report["baselines"], settings.evaluate)
    version, before = report["challenger"], report["champion"]
    current = registry.alias(CHAMPION)
    current_version = current.version if current else None
    if current_version != before:
        raise PromotionError(
            f"the champion moved from v{before} to v{current_version} since the evaluation: "
            f"evaluate again"
        )
    decision = _decision(
        registry.name, result, version, before, report, settings.evaluate.primary_metric
    )
    _tag_outcome(registry, report["challenger_run_id"], version, result)
    if result.promote:
        _move_champion(registry, version, before)
    try:
        record(lakehouse, decision)
    except Exception:
        if result.promote:  # an unrecorded promotion must not stand
            _restore_champion(registry, before)
        raise
    return {"promoted": result.promote, "reason": result.reason, "version": version,
            "champion": decision.champion_after, "checks": result.checks,
            "decision_id": decision.decision_id}  # fmt: skip


def train_and_gate(
    settings: Settings,
    lakehouse: Lakehouse,
    trainset: str | Path | None = None,
    trigger: str = "manual",
    mode: str | None = None,
    registry: Registry | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """:func:`train_challenger`, :func:`evaluate_challenger` and :func:`decide` in one go
    (``regrow retrain``, the demo): the facts, the evaluation report and the outcome."""
    registry = registry or Registry(settings)
    facts = train_challenger(settings, trainset, trigger, mode, registry)
    report = evaluate_challenger(settings, facts["version"], trainset, registry)
    return facts, report, decide(settings, report, lakehouse, registry)


def _decision(
    name: str, result: GateResult, version: str, before: str | None,
    report: Mapping[str, Any], metric: str,
) -> Decision:  # fmt: skip
    evaluation = report["evaluation"]
    mine = evaluation["challenger"]["sets"].get(BACKTEST, {}).get(metric)
    theirs = (evaluation["champion"] or {}).get("sets", {}).get(BACKTEST, {}).get(metric)
    return Decision(
        action=PROMOTE if result.promote else KEEP,
        model_name=name,
        model_version=version,
        champion_before=before,
        champion_after=version if result.promote else before,
        reason=result.reason,
        trigger=report.get("trigger") or "manual",
        mode=report.get("mode"),
        primary_metric=metric,
        challenger_value=mine,
        champion_value=theirs,
        checks=result.checks,
        run_id=report.get("challenger_run_id"),
        trainset_sha256=report["trainset"]["sha256"],
    )


def _tag_outcome(registry: Registry, run_id: str | None, version: str, result: GateResult) -> None:
    tags = {"gate.outcome": "promoted" if result.promote else "kept",
            "gate.reason": result.reason}  # fmt: skip
    if run_id:
        registry.tag_run(run_id, tags)
    registry.tag_version(version, tags)


def _move_champion(registry: Registry, version: str, before: str | None) -> None:
    if before:
        registry.tag_version(version, {PREVIOUS_CHAMPION: before})
    registry.tag_version(version, {"promoted_at": dt.datetime.now(dt.UTC).isoformat()})
    registry.set_alias(CHAMPION, version)
    challenger = registry.alias(CHALLENGER)
    if challenger is not None and challenger.version == version:
        registry.delete_alias(CHALLENGER)


def _restore_champion(registry: Registry, before: str | None) -> None:
    if before:
        registry.set_alias(CHAMPION, before)
    else:
        registry.delete_alias(CHAMPION)


# ----------------------------------------------------------------- manual decisions
def force_promote(
    settings: Settings, version: str, why: str, lakehouse: Lakehouse,
    registry: Registry | None = None, who: str | None = None,
) -> Decision:  # fmt: skip
    """Make ``version`` the champion without the gate; recorded as forced, with who and why."""
    registry = registry or Registry(settings)
    if not why.strip():
        raise PromotionError("a forced promotion needs a reason (--reason)")
    target = registry.version(version)
    current = registry.alias(CHAMPION)
    before = current.version if current else None
    if before == target.version:
        raise PromotionError(f"v{version} is already the champion")
    decision = Decision(
        action=FORCE_PROMOTE, model_name=registry.name, model_version=target.version,
        champion_before=before, champion_after=target.version,
        reason=f"forced: {why.strip()}", forced=True, run_id=target.run_id,
        mode=target.tags.get("mode"), trigger="manual",
        trainset_sha256=target.tags.get("trainset_sha256"),
    )  # fmt: skip
    if who:
        decision.actor = who
    registry.tag_version(target.version, {"forced_promotion": decision.reason})
    _move_champion(registry, target.version, before)
    record(lakehouse, decision)
    return decision


def rollback(
    settings: Settings, why: str, lakehouse: Lakehouse, registry: Registry | None = None,
    who: str | None = None,
) -> Decision:  # fmt: skip
    """Move ``champion`` back to the version it replaced, and record why."""
    registry = registry or Registry(settings)
    if not why.strip():
        raise PromotionError("a rollback needs a reason (--reason)")
    current = registry.alias(CHAMPION)
    if current is None:
        raise PromotionError(f"{registry.name} has no champion to roll back")
    previous = current.tags.get(PREVIOUS_CHAMPION)
    if not previous:
        raise PromotionError(
            f"champion v{current.version} replaced no earlier champion: there is nothing to "
            f"roll back to (promote a version with regrow promote --force instead)"
        )
    registry.version(previous)  # it must still exist
    decision = Decision(
        action=ROLLBACK, model_name=registry.name, model_version=previous,
        champion_before=current.version, champion_after=previous,
        reason=f"rollback: {why.strip()}", run_id=current.run_id, trigger="manual",
    )  # fmt: skip
    if who:
        decision.actor = who
    registry.tag_version(current.version, {"rolled_back": decision.reason})
    registry.set_alias(CHAMPION, previous)
    record(lakehouse, decision)
    return decision


def describe_registry(registry: Registry) -> list[dict[str, Any]]:
    """Every version with its aliases and the lineage a reader wants first."""
    versions = registry.versions()
    return [
        {"version": v.version, "aliases": ",".join(v.aliases), "mode": v.tags.get("mode"),
         "parent": v.tags.get("parent_version") or "", "cutoff": v.tags.get("cutoff_date"),
         "gate": v.tags.get("gate.outcome", ""), "trigger": v.tags.get("trigger")}
        for v in versions
    ]  # fmt: skip
