"""Registered model versions without a training set: a tiny XGBoost booster fitted on a
few inline rows, logged and registered the way ``regrow.model.challenger.train_challenger``
does it (one MLflow run, the booster in UBJSON with its transform.json, lineage tags).

Logging a model costs about a second; registering another version of the same logged
model costs a few milliseconds, so tests that need many versions register them from one.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import xgboost as xgb

from regrow.data.trainset import Transform
from regrow.model.registry import Registry, Version
from regrow.model.training import Model


def rows(seed: int = 0, n: int = 40) -> pd.DataFrame:
    """Raw feature rows: a number, a boolean and a category."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "amount": rng.gamma(2.0, 30.0, n),
        "online": rng.random(n) < 0.5,
        "channel": rng.choice(["online", "pos", "mobile"], n),
    })  # fmt: skip


def tiny_model(seed: int = 0, trees: int = 2) -> Model:
    """A booster of ``trees`` depth-2 trees on :func:`rows`, with its transform."""
    frame = rows(seed)
    label = ((frame["amount"] > 60) & frame["online"]).astype(int)
    transform = Transform.fit(frame, ["amount", "online"], ["channel"], rare_min_count=2)
    booster = xgb.train(
        {"max_depth": 2, "seed": seed, "nthread": 1},
        xgb.DMatrix(transform.apply(frame), label=label),
        num_boost_round=trees,
    )
    return Model(booster, transform)


def register_versions(
    registry: Registry, *tags: Mapping[str, object], model: Model | None = None
) -> list[Version]:
    """Log ``model`` (default: :func:`tiny_model`) in one run and register it once per
    mapping of ``tags``; returns the versions, oldest first."""
    model = model or tiny_model()
    with registry.run("test") as run_id:
        uri, model_id = registry.log_model(model, rows().head(3))
        return [registry.register(uri, model_id, run_id, {**t, "run_id": run_id}) for t in tags]
