"""The retrain loop: is there anything new to learn, train a challenger, evaluate it
against the champion, gate and promote, and report.

Each step is one function that the CLI, the DVC stages and the ``regrow_retrain`` DAG
call; the training and evaluation live in :mod:`regrow.model.challenger`, the gate and the
alias moves in :mod:`regrow.model.promotion`, the snapshot's versioning in
:mod:`regrow.model.versioning`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regrow.catalog import CHALLENGER, CHAMPION
from regrow.data.trainset import load_trainset
from regrow.model.challenger import (
    Challenger,
    EvaluationReport,
    evaluate_challenger,
    train_challenger,
)
from regrow.model.promotion import GateOutcome, decide
from regrow.settings import Settings

if TYPE_CHECKING:
    from regrow.stage import StageContext


@dataclass(frozen=True)
class Retrain:
    """One whole retrain: the challenger, its evaluation and the gate's outcome."""

    challenger: Challenger
    evaluation: EvaluationReport
    outcome: GateOutcome

    def as_dict(self) -> dict[str, Any]:
        return {
            "challenger": self.challenger.as_dict(),
            "evaluation": self.evaluation.as_dict(),
            "outcome": self.outcome.as_dict(),
        }


# ------------------------------------------------------------------------- skip rule
def retrain_needed(
    ctx: StageContext, trainset: str | Path | None = None, force: bool = False
) -> tuple[bool, str]:
    """Whether a scheduled retrain has anything new to learn from, and why.

    A snapshot with the same content as the one the champion (or the challenger already
    kept in shadow) was trained on teaches nothing new: the run is skipped unless ``force``
    (the DAG's ``force_retrain``).
    """
    settings = ctx.settings
    path = Path(trainset or settings.resolve(settings.split.output_dir))
    _, manifest, _ = load_trainset(path)
    if force:
        return True, "forced (force_retrain)"
    registry = ctx.registry
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


def write_report(settings: Settings, challenger: Challenger, outcome: GateOutcome) -> Path:
    """A short markdown report of one retrain in ``reports_dir`` (also the DAG's last task)."""
    out = Path(settings.resolve(settings.reports_dir)) / "retrain"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"retrain-v{challenger.version}.md"
    training, lineage = challenger.training, challenger.lineage
    lines = [
        f"# {challenger.registered_model} v{challenger.version}: "
        + ("promoted" if outcome.promoted else "kept as challenger"),
        "",
        f"- mode: {training['mode_reason']}",
        f"- trigger: {lineage['trigger']}",
        f"- trees: {training['trees']} ({training['trees_added']} new), "
        f"{training['train_rows']} rows",
        f"- training set: {challenger.trainset} ({lineage['trainset_sha256']}, "
        f"dvc {lineage['dvc_md5']})",
        f"- MLflow run: {challenger.run_id}",
        f"- champion now: v{outcome.champion}",
        f"- reason: {outcome.reason}",
        "",
        "| check | passed | detail |",
        "|---|---|---|",
        *(f"| {c['check']} | {'yes' if c['passed'] else 'NO'} | {c['detail']} |"
          for c in outcome.checks),
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------- in one go
def train_and_gate(
    ctx: StageContext,
    trainset: str | Path | None = None,
    trigger: str = "manual",
    mode: str | None = None,
) -> Retrain:
    """:func:`train_challenger`, :func:`evaluate_challenger` and :func:`decide` in one go
    (``regrow retrain``, the demo)."""
    challenger = train_challenger(ctx, trainset, trigger, mode)
    report = evaluate_challenger(ctx, challenger.version, trainset)
    return Retrain(challenger, report, decide(ctx, report))
