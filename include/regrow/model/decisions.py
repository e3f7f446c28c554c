"""``gold.decisions``: one row per decision about the model, with its reason and numbers.

Promotion gates, forced promotions and rollbacks write here (the retrain policy will too):
who or what decided, which versions were champion before and after, the primary metric of
both models, every check the gate made (JSON), and the MLflow run. People read it with
``regrow query "SELECT * FROM gold.decisions"``.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from regrow.catalog import DECISION_DATE, DECISIONS, TABLES
from regrow.stage import default_actor
from regrow.storage.lakehouse import CommitInfo, Lakehouse

PROMOTE, KEEP, FORCE_PROMOTE, ROLLBACK = "promote", "keep", "force_promote", "rollback"
# The retrain policy's daily actions (regrow.policy): exactly one of these per monitored day.
NONE, RETRAIN_WARM, RETRAIN_FULL = "none", "retrain_warm", "retrain_full"
POLICY_ACTIONS = (NONE, RETRAIN_WARM, RETRAIN_FULL)
RETRAIN_ACTIONS = (RETRAIN_WARM, RETRAIN_FULL)

SCHEMA = pa.schema([
    ("decision_id", pa.string()),
    ("decided_at", pa.timestamp("us", tz="UTC")),
    ("decision_date", pa.date32()),
    ("action", pa.string()),
    ("model_name", pa.string()),
    ("model_version", pa.string()),
    ("champion_before", pa.string()),
    ("champion_after", pa.string()),
    ("trigger", pa.string()),
    ("mode", pa.string()),
    ("primary_metric", pa.string()),
    ("challenger_value", pa.float64()),
    ("champion_value", pa.float64()),
    ("reason", pa.string()),
    ("checks", pa.string()),
    ("forced", pa.bool_()),
    ("actor", pa.string()),
    ("run_id", pa.string()),
    ("trainset_sha256", pa.string()),
    ("budget_left", pa.int64()),  # policy rows: retrains left in the week after this one
])  # fmt: skip


@dataclass
class Decision:
    action: str
    model_name: str
    model_version: str | None
    champion_before: str | None
    champion_after: str | None
    reason: str
    trigger: str = "manual"
    mode: str | None = None
    primary_metric: str | None = None
    challenger_value: float | None = None
    champion_value: float | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    forced: bool = False
    actor: str = field(default_factory=default_actor)  # who decided: ctx.actor
    run_id: str | None = None
    trainset_sha256: str | None = None
    budget_left: int | None = None
    decided_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    decision_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # The day the decision is about (a policy decision: the monitored day); else the day
    # it was made.
    decision_date: dt.date | None = None

    def row(self) -> dict[str, Any]:
        row = asdict(self)
        row["checks"] = json.dumps(self.checks, default=str, sort_keys=True)
        row[DECISION_DATE] = self.decision_date or self.decided_at.date()
        return row


def record_daily(lakehouse: Lakehouse, decision: Decision) -> CommitInfo:
    """Record a policy decision as *the* decision of its day: a rerun of the day replaces
    it (the day's gate, promotion and rollback rows stay)."""
    if decision.action not in POLICY_ACTIONS or decision.decision_date is None:
        raise ValueError(f"not a daily policy decision: {decision.action}")
    table = pa.Table.from_pylist([decision.row()], schema=SCHEMA)
    where = {DECISION_DATE: decision.decision_date, "action": list(POLICY_ACTIONS)}
    return lakehouse.replace_records(
        DECISIONS, table, where, partition_by=list(TABLES[DECISIONS].partition_by)
    )


def record(lakehouse: Lakehouse, decision: Decision) -> CommitInfo:
    """Append one decision to ``gold.decisions`` (partitioned by ``decision_date``)."""
    table = pa.Table.from_pylist([decision.row()], schema=SCHEMA)
    return lakehouse.append_records(
        DECISIONS, table, partition_by=list(TABLES[DECISIONS].partition_by)
    )
