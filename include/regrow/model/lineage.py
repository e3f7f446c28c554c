"""Lineage: from a prediction row back to the data and code behind it.

A gold.predictions row names its model version. The version's lineage (its parent if it
was warm-started, its training snapshot's DVC hash, window and Delta table versions, the
git commit) lives in MLflow's version tags; scoring copies it into the Delta table
``gold.model_versions`` for every version that scores and each of its ancestors. So a
lineage question is answered from two small Delta reads (no MLflow or Spark start-up,
well under a second), and analysts can join predictions to their models in SQL.

A version's tags are written once, when it is registered, so the copy cannot go stale;
two scoring runs recording the same version at once may both append it, and readers keep
one row per version.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from regrow.catalog import EVENT_DATE, MODEL_ALIAS, MODEL_VERSIONS, PREDICTIONS

if TYPE_CHECKING:
    import pyarrow as pa

    from regrow.model.registry import Registry, Version
    from regrow.settings import DatasetSettings
    from regrow.storage.lakehouse import Lakehouse

# Version tags copied to gold.model_versions (see regrow.model.retrain._lineage).
TAGS = (
    "mode", "mode_reason", "parent_version", "warm_starts_in_a_row", "trigger", "cutoff_date",
    "train_window", "train_last_event", "delta_versions", "trainset_sha256", "dvc_md5",
    "git_commit",
)  # fmt: skip


class LineageError(LookupError):
    """No prediction, or no recorded model version, for what was asked."""


def _ancestry(registry: Registry, versions: Iterable[Version]) -> list[Version]:
    """The versions and every parent they were warm-started from, each once."""
    out: dict[str, Version] = {}
    todo = list(versions)
    while todo:
        v = todo.pop()
        if v.version in out:
            continue
        out[v.version] = v
        parent = v.tags.get("parent_version")
        if parent and parent not in out:
            todo.append(registry.version(parent))
    return [out[k] for k in sorted(out, key=int)]


def record_versions(
    lakehouse: Lakehouse, registry: Registry, versions: Iterable[Version], run_id: str
) -> list[str]:
    """Copy the lineage of ``versions`` and their ancestors into gold.model_versions,
    those not there yet; returns the versions added."""
    import pyarrow as pa

    known: set[tuple[str, int]] = set()
    if lakehouse.exists(MODEL_VERSIONS):
        table = lakehouse.to_arrow(MODEL_VERSIONS, columns=["model_name", "model_version"])
        known = set(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))
    new = [v for v in _ancestry(registry, versions) if (v.name, int(v.version)) not in known]
    if not new:
        return []
    rows = [
        {
            "model_name": v.name,
            "model_version": int(v.version),
            "model_run_id": v.run_id,
            "source": v.source,
            **{t: v.tags.get(t) for t in TAGS},
            "recorded_by": run_id,
        }
        for v in new
    ]
    schema = pa.schema(
        [("model_name", pa.string()), ("model_version", pa.int64()),
         ("model_run_id", pa.string()), ("source", pa.string()),
         *((t, pa.string()) for t in TAGS), ("recorded_by", pa.string())]
    )  # fmt: skip
    lakehouse.append_records(MODEL_VERSIONS, pa.Table.from_pylist(rows, schema))
    return [v.version for v in new]


@dataclass
class Lineage:
    """The predictions of an entity on a day, and the chain of each model behind them."""

    entity: str
    day: dt.date
    predictions: list[dict[str, Any]]
    # model version -> its gold.model_versions row, for each scorer and its ancestors.
    models: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    tables: dict[str, int] = field(default_factory=dict)  # table -> version read

    def chain(self, name: str, version: int) -> list[dict[str, Any]]:
        """A version, its parent, the parent's parent ... as far as recorded."""
        out, key = [], (name, version)
        while key in self.models and len(out) < 10_000:
            row = self.models[key]
            out.append(row)
            parent = row.get("parent_version")
            key = (name, int(parent)) if parent else None
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "day": str(self.day),
            "tables": self.tables,
            "predictions": [
                {**p, "models": self.chain(p["model_name"], p["model_version"])}
                for p in self.predictions
            ],
        }


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return [
        {k: (v.isoformat() if isinstance(v, dt.date | dt.datetime) else v) for k, v in r.items()}
        for r in table.to_pylist()
    ]


def _entity_column(dataset: DatasetSettings) -> str:
    """What ``entity`` names: the contract's entity, else (no entity) the event id."""
    return dataset.entity_id or dataset.event_id


def lineage(lakehouse: Lakehouse, dataset: DatasetSettings, entity: str, day: dt.date) -> Lineage:
    """The lineage of every prediction of ``entity`` on ``day`` (its events' rows in
    gold.predictions, champion and shadow); ``entity`` is an event id when the contract
    has no entity.

    Raises:
        LineageError: the day has no predictions, or the entity none on that day.
    """
    import pyarrow.compute as pc

    lakehouse.require_days(
        PREDICTIONS, [day], EVENT_DATE, hint=f": score the day first (regrow score --date {day})"
    )
    version = lakehouse.table_version(PREDICTIONS)
    day_rows = lakehouse.to_arrow(PREDICTIONS, version, {EVENT_DATE: day})
    key = _entity_column(dataset)
    ids = pc.cast(day_rows[key], "string")
    found = day_rows.filter(pc.equal(ids, str(entity)))
    if found.num_rows == 0:
        raise LineageError(
            f"entity {key}={entity!r} has no prediction on {day} "
            f"({PREDICTIONS} v{version} has {day_rows.num_rows} rows that day)"
        )
    alias_order = pc.if_else(pc.equal(found[MODEL_ALIAS], "champion"), 0, 1)
    found = (
        found.append_column("__order", alias_order)
        .sort_by([(dataset.event_timestamp, "ascending"), ("__order", "ascending")])
        .drop_columns(["__order"])
    )
    result = Lineage(str(entity), day, _rows(found), tables={PREDICTIONS: version})
    if lakehouse.exists(MODEL_VERSIONS):
        result.tables[MODEL_VERSIONS] = lakehouse.table_version(MODEL_VERSIONS)
        for row in _rows(lakehouse.to_arrow(MODEL_VERSIONS)):
            result.models.setdefault((row["model_name"], row["model_version"]), row)
    return result


def describe(result: Lineage, dataset: DatasetSettings) -> list[str]:
    """The lineage as lines: the predictions, then each model that made them, back
    through its parents to its training snapshot, Delta versions and git commit."""
    events = {p[dataset.event_id] for p in result.predictions}
    lines = [
        f"{_entity_column(dataset)}={result.entity} on {result.day}: {len(events)} event(s), "
        f"{len(result.predictions)} prediction row(s) "
        f"({', '.join(f'{t} v{v}' for t, v in result.tables.items())})",
        "predictions:",
    ]
    scorers: dict[tuple[str, int], str] = {}
    for p in result.predictions:
        lines.append(
            f"  {dataset.event_id}={p[dataset.event_id]} at {p[dataset.event_timestamp]}  "
            f"{p['model_alias']:<8} v{p['model_version']}  score {p['score']:.4f}  "
            f"decision {p['decision']} (threshold {p['threshold']})  "
            f"[silver.features v{p['_source_version']}, run {p['_run_id']}]"
        )
        scorers.setdefault((p["model_name"], p["model_version"]), p["model_alias"])
    lines.append("models:")
    for (name, version), alias in scorers.items():
        chain = result.chain(name, version)
        if not chain:
            lines.append(f"  {name} v{version} ({alias}): not in {MODEL_VERSIONS} (scored "
                         "before lineage was recorded; see `regrow models`)")  # fmt: skip
        for depth, m in enumerate(chain):
            pad = "  " * (depth + 1)
            role = f"({alias})" if depth == 0 else f"parent of v{chain[depth - 1]['model_version']}"
            lines.append(f"{pad}{name} v{m['model_version']} {role}: {m['mode_reason']}")
            tables = json.loads(m["delta_versions"]) if m.get("delta_versions") else {}
            read = ", ".join(f"{t} v{v}" for t, v in sorted(tables.items())) or "?"
            lines += [
                f"{pad}  trigger {m['trigger']}; MLflow run {m['model_run_id']}",
                f"{pad}  trained on {m['train_window']} (cut-off {m['cutoff_date']}); read {read}",
                f"{pad}  snapshot: dvc md5 {m['dvc_md5']}, {m['trainset_sha256']}",
                f"{pad}  code: git {m['git_commit']}",
            ]
    return lines
