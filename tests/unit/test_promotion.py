"""Promotion on a real MLflow store and a real gold.decisions table: the gate's verdict
applied to the aliases, the manual moves (forced promotion, rollback), their refusals, and
the undo of a promotion whose decision cannot be recorded.

The evaluation reports are made by hand (the gate's own rules have their tests in
test_evaluation.py); the versions are tiny boosters registered by tests.models."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from deltalake.exceptions import DeltaError

from regrow.catalog import CHALLENGER, CHAMPION, DECISIONS
from regrow.model.challenger import EvaluationReport
from regrow.model.evaluation import BACKTEST, Evaluation
from regrow.model.promotion import (
    GateOutcome,
    PromotionError,
    decide,
    describe_registry,
    force_promote,
    rollback,
)
from regrow.model.registry import PREVIOUS_CHAMPION, RegistryError
from regrow.storage.lakehouse import SchemaChangeError
from tests.conftest import context_of
from tests.models import register_versions

pytestmark = pytest.mark.usefixtures("mlflow_db")

BASELINES = {"random": {"pr_auc": 0.03}, "majority": {"pr_auc": 0.03},
             "heuristic": {"pr_auc": 0.08}}  # fmt: skip
SHA = "sha256:5e1f"


def version_tags(n: int, **tags: str) -> dict[str, str]:
    return {"mode": "stateless", "trigger": "schedule", "cutoff_date": f"2026-01-{n:02d}",
            "trainset_sha256": f"sha256:v{n}", **tags}  # fmt: skip


@pytest.fixture
def ctx(make_settings):
    """A stage context acted on by alice, with v1 (stateless) and v2 (warm-started from
    v1) registered, v2 as challenger."""
    ctx = context_of(make_settings(), actor="alice")
    register_versions(ctx.registry, version_tags(1),
                      version_tags(2, mode="warm_start", parent_version="1", trigger="drift"))  # fmt: skip
    ctx.registry.set_alias(CHALLENGER, "2")
    return ctx


def evaluation(pr_auc: float) -> Evaluation:
    return Evaluation(
        sets={BACKTEST: {"pr_auc": pr_auc, "rows": 500}},
        behavioral=[{"name": "risk_up", "passed": True, "detail": "moved up"}],
    )


def report(ctx, challenger: str, champion: str | None, mine: float, theirs: float | None = None,
           already: bool = False) -> EvaluationReport:  # fmt: skip
    version = ctx.registry.version(challenger)
    return EvaluationReport(
        registered_model=ctx.registry.name, challenger=challenger,
        challenger_run_id=version.run_id, champion=champion, already_champion=already,
        trainset={"path": "data/trainset", "cutoff_date": "2026-01-15", "sha256": SHA},
        challenger_evaluation=evaluation(mine),
        champion_evaluation=evaluation(theirs) if theirs is not None else None,
        baselines=BASELINES, mode=version.tags["mode"], trigger=version.tags["trigger"],
    )  # fmt: skip


def decisions(ctx) -> list[dict]:
    return ctx.lakehouse.sql("SELECT * FROM gold.decisions ORDER BY decided_at").to_pylist()


def aliases(ctx) -> dict[str, str | None]:
    found = {a: ctx.registry.alias(a) for a in (CHAMPION, CHALLENGER)}
    return {a: v.version if v else None for a, v in found.items()}


# --------------------------------------------------------------------------- decide
def test_a_first_model_that_beats_every_baseline_becomes_champion(ctx):
    outcome = decide(ctx, report(ctx, "2", None, mine=0.3))

    assert (outcome.promoted, outcome.version, outcome.champion) == (True, "2", "2")
    assert outcome.reason == "promoted: pr_auc 0.3000 beats every baseline by >= 0.01"
    assert aliases(ctx) == {CHAMPION: "2", CHALLENGER: None}  # no longer a challenger
    tags = ctx.registry.version("2").tags
    assert (tags["gate.outcome"], tags["gate.reason"]) == ("promoted", outcome.reason)
    assert "promoted_at" in tags and PREVIOUS_CHAMPION not in tags
    run = ctx.registry.client.get_run(ctx.registry.version("2").run_id)
    assert run.data.tags["gate.outcome"] == "promoted"
    (row,) = decisions(ctx)
    assert row["decision_id"] == outcome.decision_id
    assert (row["action"], row["model_version"], row["champion_before"], row["champion_after"]) == (
        "promote", "2", None, "2")  # fmt: skip
    assert (row["actor"], row["reason"], row["forced"]) == ("alice", outcome.reason, False)
    assert (row["trigger"], row["mode"], row["trainset_sha256"]) == ("drift", "warm_start", SHA)
    assert (row["challenger_value"], row["champion_value"]) == (0.3, None)
    assert json.loads(row["checks"]) == outcome.checks
    assert [c["check"] for c in outcome.checks] == [
        "beats baseline random", "beats baseline majority", "beats baseline heuristic",
        "behavioral risk_up",
    ]  # fmt: skip


def test_a_better_challenger_replaces_the_champion_and_remembers_it(ctx):
    ctx.registry.set_alias(CHAMPION, "1")

    outcome = decide(ctx, report(ctx, "2", "1", mine=0.32, theirs=0.25))

    assert outcome.promoted and outcome.champion == "2"
    assert aliases(ctx) == {CHAMPION: "2", CHALLENGER: None}
    assert ctx.registry.version("2").tags[PREVIOUS_CHAMPION] == "1"
    (row,) = decisions(ctx)
    assert (row["champion_before"], row["champion_after"]) == ("1", "2")
    assert (row["challenger_value"], row["champion_value"]) == (0.32, 0.25)
    assert GateOutcome.from_dict(json.loads(json.dumps(outcome.as_dict()))) == outcome


def test_a_challenger_that_does_not_beat_the_champion_is_kept_in_shadow(ctx):
    ctx.registry.set_alias(CHAMPION, "1")

    outcome = decide(ctx, report(ctx, "2", "1", mine=0.25, theirs=0.30))

    assert (outcome.promoted, outcome.champion) == (False, "1")
    assert outcome.reason.startswith(
        "kept: beats champion on backtest: pr_auc 0.2500 vs champion 0.3000 (-0.0500"
    )
    assert aliases(ctx) == {CHAMPION: "1", CHALLENGER: "2"}
    tags = ctx.registry.version("2").tags
    assert tags["gate.outcome"] == "kept" and "promoted_at" not in tags
    assert PREVIOUS_CHAMPION not in tags
    (row,) = decisions(ctx)
    assert (row["action"], row["champion_before"], row["champion_after"]) == ("keep", "1", "1")


def test_the_champion_itself_is_not_decided_again(ctx):
    ctx.registry.set_alias(CHAMPION, "2")

    outcome = decide(ctx, report(ctx, "2", "2", mine=0.3, already=True))

    assert (outcome.promoted, outcome.champion, outcome.decision_id) == (False, "2", None)
    assert outcome.reason == "v2 is already the champion: nothing to decide"
    assert "gate.outcome" not in ctx.registry.version("2").tags
    assert not ctx.lakehouse.exists(DECISIONS)


def test_a_champion_moved_since_the_evaluation_stops_the_decision(ctx):
    ctx.registry.set_alias(CHAMPION, "1")
    evaluated = report(ctx, "2", "1", mine=0.32, theirs=0.25)
    ctx.registry.set_alias(CHAMPION, "2")  # someone promoted v2 by hand meanwhile

    with pytest.raises(PromotionError, match="champion moved from v1 to v2 since the evaluation"):
        decide(ctx, evaluated)
    assert aliases(ctx) == {CHAMPION: "2", CHALLENGER: "2"}
    assert "gate.outcome" not in ctx.registry.version("2").tags
    assert not ctx.lakehouse.exists(DECISIONS)


def test_a_first_promotion_that_cannot_be_recorded_leaves_no_champion(ctx):
    # gold.decisions exists with another shape: the decision row cannot be appended.
    ctx.lakehouse.append_records(DECISIONS, pa.table({"decision_id": ["x"], "checks": [3]}))

    with pytest.raises(SchemaChangeError, match="column checks"):
        decide(ctx, report(ctx, "2", None, mine=0.3))
    assert aliases(ctx)[CHAMPION] is None
    assert ctx.lakehouse.to_arrow(DECISIONS).num_rows == 1


def test_a_promotion_that_cannot_be_recorded_gives_the_champion_back(make_settings, tmp_path):
    # The lakehouse root is a file: no table can be written under it.
    (tmp_path / "not-a-folder").write_text("")
    settings = make_settings(lakehouse={"root": str(tmp_path / "not-a-folder")})
    ctx = context_of(settings, actor="alice")
    register_versions(ctx.registry, version_tags(1), version_tags(2))
    ctx.registry.set_alias(CHAMPION, "1")
    ctx.registry.set_alias(CHALLENGER, "2")

    with pytest.raises(DeltaError, match="not-a-folder/gold/decisions"):
        decide(ctx, report(ctx, "2", "1", mine=0.32, theirs=0.25))
    assert aliases(ctx) == {CHAMPION: "1", CHALLENGER: "2"}
    # Its promotion never happened: no rollback may follow it back to v1 later.
    tags = ctx.registry.version("2").tags
    assert (tags["gate.outcome"], tags[PREVIOUS_CHAMPION]) == ("undone", "")


def test_an_undone_promotion_leaves_the_challenger_alias_where_it_was(ctx):
    ctx.lakehouse.append_records(DECISIONS, pa.table({"decision_id": ["x"], "checks": [3]}))

    with pytest.raises(SchemaChangeError):
        decide(ctx, report(ctx, "2", None, mine=0.3))
    assert aliases(ctx) == {CHAMPION: None, CHALLENGER: "2"}
    assert ctx.registry.version("2").tags["gate.outcome"] == "undone"


# ------------------------------------------------------------------ manual decisions
def test_a_forced_promotion_moves_the_champion_and_says_who_and_why(ctx):
    ctx.registry.set_alias(CHAMPION, "1")

    decision = force_promote(ctx, "2", "  incident 42: v1 flags every card  ")

    assert aliases(ctx) == {CHAMPION: "2", CHALLENGER: None}
    tags = ctx.registry.version("2").tags
    assert tags["forced_promotion"] == "forced: incident 42: v1 flags every card"
    assert tags[PREVIOUS_CHAMPION] == "1"
    (row,) = decisions(ctx)
    assert row["decision_id"] == decision.decision_id
    assert (row["action"], row["forced"], row["actor"]) == ("force_promote", True, "alice")
    assert (row["champion_before"], row["champion_after"], row["model_version"]) == ("1", "2", "2")
    assert (row["mode"], row["trainset_sha256"], row["trigger"]) == ("warm_start", "sha256:v2",
                                                                      "manual")  # fmt: skip
    assert row["run_id"] == ctx.registry.version("2").run_id


def test_a_forced_promotion_is_refused_without_a_reason_a_version_or_a_change(ctx):
    ctx.registry.set_alias(CHAMPION, "1")

    with pytest.raises(PromotionError, match=r"a forced promotion needs a reason \(--reason\)"):
        force_promote(ctx, "2", "   ")
    with pytest.raises(PromotionError, match="^v1 is already the champion$"):
        force_promote(ctx, "1", "again")
    with pytest.raises(RegistryError, match="reading card_transactions v7 failed"):
        force_promote(ctx, "7", "no such version")
    assert aliases(ctx) == {CHAMPION: "1", CHALLENGER: "2"}
    assert not ctx.lakehouse.exists(DECISIONS)


def test_a_rollback_gives_the_champion_back_to_the_version_it_replaced(ctx):
    ctx.registry.set_alias(CHAMPION, "1")
    decide(ctx, report(ctx, "2", "1", mine=0.32, theirs=0.25))

    decision = rollback(ctx, "scores drifted after the promotion")

    assert aliases(ctx)[CHAMPION] == "1"
    rolled = ctx.registry.version("2").tags["rolled_back"]
    assert rolled == decision.reason == "rollback: scores drifted after the promotion"
    rows = decisions(ctx)
    assert [r["action"] for r in rows] == ["promote", "rollback"]
    assert (rows[1]["model_version"], rows[1]["champion_before"], rows[1]["champion_after"]) == (
        "1", "2", "1")  # fmt: skip
    assert (rows[1]["actor"], rows[1]["run_id"]) == ("alice", ctx.registry.version("2").run_id)


def test_a_rollback_is_refused_when_there_is_nothing_to_roll_back_to(ctx):
    with pytest.raises(PromotionError, match=r"^a rollback needs a reason \(--reason\)$"):
        rollback(ctx, "")
    with pytest.raises(PromotionError, match="^card_transactions has no champion to roll back$"):
        rollback(ctx, "bad scores")
    ctx.registry.set_alias(CHAMPION, "1")
    with pytest.raises(PromotionError, match="champion v1 replaced no earlier champion: there is "
                                             "nothing to roll back to"):  # fmt: skip
        rollback(ctx, "bad scores")
    ctx.registry.tag_version("1", {PREVIOUS_CHAMPION: "9"})  # a version since deleted
    with pytest.raises(RegistryError, match="reading card_transactions v9 failed"):
        rollback(ctx, "bad scores")
    assert aliases(ctx)[CHAMPION] == "1"
    assert "rolled_back" not in ctx.registry.version("1").tags
    assert not ctx.lakehouse.exists(DECISIONS)


def test_the_registry_is_described_newest_first_with_its_lineage(ctx):
    ctx.registry.set_alias(CHAMPION, "1")
    decide(ctx, report(ctx, "2", "1", mine=0.25, theirs=0.30))

    assert describe_registry(ctx.registry) == [
        {"version": "2", "aliases": CHALLENGER, "mode": "warm_start", "parent": "1",
         "cutoff": "2026-01-02", "gate": "kept", "trigger": "drift"},
        {"version": "1", "aliases": CHAMPION, "mode": "stateless", "parent": "",
         "cutoff": "2026-01-01", "gate": "", "trigger": "schedule"},
    ]  # fmt: skip
