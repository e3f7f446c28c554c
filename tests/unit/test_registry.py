"""The MLflow experiment and registered model, on a real SQLite store in tmp_path: where
the store is, runs, versions, aliases, tags, loads, warm-start parents, and the one error
every MLflow failure becomes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import mlflow
import numpy as np
import pytest

from regrow.catalog import CHALLENGER, CHAMPION
from regrow.model.registry import Registry, RegistryError, artifact_location, tracking_uri
from tests.conftest import _free_port
from tests.models import register_versions, rows, tiny_model


# ------------------------------------------------------------------------ locations
def test_a_relative_sqlite_path_is_made_absolute_against_the_params_folder(make_settings, tmp_path):
    relative = make_settings(mlflow={"tracking_uri": "sqlite:///stores/runs.db"})
    absolute = make_settings(mlflow={"tracking_uri": "sqlite:////srv/mlflow.db"})
    server = make_settings(mlflow={"tracking_uri": "http://mlflow.internal:5000"})

    assert tracking_uri(relative) == f"sqlite:///{tmp_path}/stores/runs.db"
    assert tracking_uri(absolute) == "sqlite:////srv/mlflow.db"
    assert tracking_uri(server) == "http://mlflow.internal:5000"


def test_artifacts_go_to_a_file_uri_next_to_params_unless_a_remote_uri_is_given(
    make_settings, tmp_path
):
    assert artifact_location(make_settings()) == (tmp_path / "mlartifacts").as_uri()
    remote = make_settings(mlflow={"artifact_location": "s3://models/regrow"})
    assert artifact_location(remote) == "s3://models/regrow"


def test_the_default_store_is_the_sqlite_file_next_to_params(make_settings, mlflow_db: Path):
    registry = Registry(make_settings())
    assert registry.uri == f"sqlite:///{mlflow_db}"
    assert (registry.name, registry.experiment) == ("card_transactions", "regrow-card_transactions")
    registry.check()  # the migrated store answers


def test_an_unreachable_server_is_a_registry_error_naming_its_uri(make_settings):
    uri = f"http://127.0.0.1:{_free_port()}"
    settings = make_settings(
        mlflow={"tracking_uri": uri, "http_timeout_seconds": 2, "http_max_retries": 0}
    )
    registry = Registry(settings)

    with pytest.raises(RegistryError, match=f"^MLflow at {uri}: connecting failed: "):
        registry.check()
    with pytest.raises(RegistryError, match=f"MLflow at {uri}: reading alias champion of "):
        registry.alias(CHAMPION)
    with pytest.raises(RegistryError, match="opening experiment regrow-card_transactions"):
        with registry.run("never"):
            pytest.fail("a run started without a tracking server")


# ----------------------------------------------------------------------------- runs
@pytest.mark.usefixtures("mlflow_db")
def test_runs_live_in_the_projects_experiment_and_a_failure_marks_them_failed(
    make_settings, tmp_path
):
    settings = make_settings(mlflow={"experiment": "fraud-lab"})
    registry = Registry(settings)

    with registry.run("good", tags={"trigger": "drift"}) as good:
        pass
    with pytest.raises(ValueError, match="boom"), registry.run("bad") as bad:
        raise ValueError("boom")

    experiment = registry.client.get_experiment_by_name("fraud-lab")
    assert registry.experiment_id() == experiment.experiment_id  # found, not made again
    assert experiment.artifact_location == (tmp_path / "mlartifacts").as_uri()
    runs = {r: registry.client.get_run(r) for r in (good, bad)}
    assert [runs[r].info.status for r in (good, bad)] == ["FINISHED", "FAILED"]
    assert runs[good].info.experiment_id == experiment.experiment_id
    assert runs[good].data.tags["trigger"] == "drift"
    assert runs[good].info.run_name == "good"


# ------------------------------------------------------------------------- versions
@pytest.mark.usefixtures("mlflow_db")
def test_versions_are_listed_newest_first_by_number_with_their_aliases(make_settings):
    registry = Registry(make_settings(mlflow={"registered_model": "fraud"}))
    assert registry.versions() == []  # no registered model yet
    assert registry.alias(CHAMPION) is None

    made = register_versions(registry, *({"cutoff_date": f"2026-01-{d:02d}"} for d in range(1, 12)))
    registry.set_alias(CHAMPION, "9")
    registry.set_alias(CHALLENGER, "10")

    listed = registry.versions()
    # By number: a string sort would put 9 before 11 and 10.
    assert [v.version for v in listed] == [str(n) for n in range(11, 0, -1)]
    assert [v.version for v in made] == [str(n) for n in range(1, 12)]
    aliases = {v.version: v.aliases for v in listed}
    assert aliases["9"] == [CHAMPION] and aliases["10"] == [CHALLENGER] and aliases["11"] == []
    assert {v.name for v in listed} == {"fraud"}
    assert listed[0].tags["cutoff_date"] == "2026-01-11"
    assert listed[0].run_id == made[0].run_id and listed[0].tags["run_id"] == made[0].run_id


@pytest.mark.usefixtures("mlflow_db")
def test_an_alias_is_set_moved_and_removed(make_settings):
    registry = Registry(make_settings())
    register_versions(registry, {}, {})
    assert registry.alias(CHAMPION) is None  # the model exists, the alias does not

    registry.set_alias(CHAMPION, "1")
    first = registry.alias(CHAMPION)
    registry.set_alias(CHAMPION, "2")
    moved = registry.alias(CHAMPION)
    registry.delete_alias(CHAMPION)

    assert (first.version, first.aliases) == ("1", [CHAMPION])
    assert (moved.version, moved.aliases) == ("2", [CHAMPION])
    assert registry.version("1").aliases == []
    assert registry.alias(CHAMPION) is None
    with pytest.raises(RegistryError, match=r"setting champion -> v7 failed"):
        registry.set_alias(CHAMPION, "7")


@pytest.mark.usefixtures("mlflow_db")
def test_tags_are_strings_and_a_missing_lineage_value_is_not_tagged(make_settings):
    registry = Registry(make_settings())
    (version,) = register_versions(
        registry, {"mode": "stateless", "parent_version": None, "warm_starts_in_a_row": 0}
    )

    registry.tag_version(version.version, {"gate.outcome": "kept", "rows": 12})
    registry.tag_run(version.run_id, {"note": "x" * 6000})

    tags = registry.version(version.version).tags
    assert tags["mode"] == "stateless" and tags["warm_starts_in_a_row"] == "0"
    assert "parent_version" not in tags
    assert (tags["gate.outcome"], tags["rows"]) == ("kept", "12")
    assert registry.client.get_run(version.run_id).data.tags["note"] == "x" * 5000


@pytest.mark.usefixtures("mlflow_db")
def test_a_missing_version_is_a_registry_error_naming_it(make_settings, tmp_path):
    registry = Registry(make_settings())
    register_versions(registry, {})

    with pytest.raises(RegistryError, match=r"^MLflow at sqlite:///.*: reading card_transactions v9 failed"):  # fmt: skip
        registry.version("9")
    with pytest.raises(RegistryError, match=str(tmp_path / "mlflow.db")):
        registry.load("9")


# ---------------------------------------------------------------------------- loads
@pytest.mark.usefixtures("mlflow_db")
def test_a_loaded_version_predicts_like_the_model_that_was_registered(make_settings):
    registry = Registry(make_settings())
    small, large = tiny_model(seed=1, trees=2), tiny_model(seed=2, trees=5)
    (first,) = register_versions(registry, {}, model=small)
    (second,) = register_versions(registry, {}, model=large)

    loaded = {v.version: registry.load(v.version) for v in (first, second)}

    frame = rows(seed=9)
    for version, model in ((first, small), (second, large)):
        got = loaded[version.version]
        assert got.trees == model.trees
        assert got.transform.to_dict() == model.transform.to_dict()
        np.testing.assert_allclose(got.predict(frame), model.predict(frame), rtol=1e-6)


@pytest.mark.usefixtures("mlflow_db")
def test_a_version_not_logged_by_regrow_cannot_be_loaded(make_settings):
    registry = Registry(make_settings())
    with registry.run("foreign") as run_id:
        mlflow.log_text("not a booster", "foreign/readme.txt")
    version = registry.register(f"runs:/{run_id}/foreign", None, run_id, {})

    with pytest.raises(RegistryError) as raised:
        registry.load(version.version)
    # Raised inside the download, passed through as it is (not wrapped a second time).
    assert str(raised.value).startswith("card_transactions v1 (")
    assert "has no model.ubj or transform.json: it was not logged by regrow" in str(raised.value)


@pytest.mark.usefixtures("mlflow_db")
def test_a_parent_is_the_version_with_its_training_window_and_warm_start_count(make_settings):
    registry = Registry(make_settings())
    model = tiny_model(trees=3)
    tagged, untagged = register_versions(
        registry, {"train_last_event": "2026-01-10T23:59:00+00:00", "warm_starts_in_a_row": 2},
        {"mode": "stateless"}, model=model,
    )  # fmt: skip

    parent = registry.parent(tagged)

    assert parent.version == "1" and parent.warm_starts_in_a_row == 2
    assert parent.train_end == dt.datetime(2026, 1, 10, 23, 59, tzinfo=dt.UTC)
    assert parent.model.trees == 3
    with pytest.raises(RegistryError, match="card_transactions v2 has no train_last_event tag"):
        registry.parent(untagged)
