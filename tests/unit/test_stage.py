"""The stage contract: one factory builds the context; Spark and the registry are made on
first use, once; the run id and the actor are what the caller says, else defaults."""

from __future__ import annotations

import getpass
import re
from pathlib import Path

from regrow.orchestration.context import stage_context
from regrow.stage import StageContext, default_actor, new_run_id


def test_new_run_id_is_prefixed_and_timestamped():
    assert re.fullmatch(r"manual__\d{8}T\d{6}", new_run_id())
    assert new_run_id("backfill").startswith("backfill__")


def test_spark_and_registry_are_made_on_first_use_and_once(make_settings):
    made: list[str] = []
    ctx = StageContext(
        settings=make_settings(),
        lakehouse=None,
        run_id="r",
        actor="a",
        make_spark=lambda: made.append("spark") or "the-session",
        make_registry=lambda: made.append("registry") or "the-registry",
    )
    assert made == []  # a stage that needs neither starts no JVM and opens no MLflow client
    assert ctx.spark == "the-session" and ctx.spark == "the-session"
    assert ctx.registry == "the-registry" and ctx.registry == "the-registry"
    assert made == ["spark", "registry"]


def test_stage_context_defaults(make_settings, tmp_path: Path):
    settings = make_settings()
    ctx = stage_context(settings)
    assert re.fullmatch(r"manual__\d{8}T\d{6}", ctx.run_id)
    assert ctx.actor == default_actor() == getpass.getuser()
    assert ctx.lakehouse.root == str(tmp_path / "lakehouse")  # lakehouse.root of params.yaml
    assert ctx.registry.uri == f"sqlite:///{tmp_path / 'mlflow.db'}"  # made from the settings


def test_stage_context_takes_what_the_caller_hands(make_settings):
    session, registry = object(), object()
    ctx = stage_context(
        make_settings(), "scheduled__2026", actor="airflow:regrow_retrain", spark=session,
        registry=registry,
    )  # fmt: skip
    assert (ctx.run_id, ctx.actor) == ("scheduled__2026", "airflow:regrow_retrain")
    assert ctx.spark is session and ctx.registry is registry
