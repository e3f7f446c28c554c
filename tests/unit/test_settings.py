"""regrow.settings: params.yaml is validated at load, and every error names the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from regrow.settings import PARAMS_ENV, ConfigError, Settings, load_settings, settings_from_dict

REPO = Path(__file__).resolve().parents[2]


def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_the_repo_params_load_into_typed_settings():
    settings = load_settings(REPO / "params.yaml")

    assert isinstance(settings, Settings)
    assert settings.dataset.event_id == "transaction_id"
    assert settings.dataset.features == [
        "amount",
        "distance_from_home_km",
        "merchant_risk",
        "merchant_category",
        "channel",
        "country",
        "card_present",
    ]
    assert settings.simulator.start_date.isoformat() == "2026-01-01"
    assert settings.lakehouse.engine == "delta-rs"  # params.yaml's choice; the model's is auto
    assert settings.base_dir == str(REPO)


@pytest.mark.parametrize(
    ("section", "values", "key", "shown"),
    [
        ("lakehouse", {"engin": "delta-rs"}, "lakehouse.engin", "unknown key"),
        ("simulator", {"days": "many"}, "simulator.days", "'many'"),
        ("lakehouse", {"engine": "duckdb"}, "lakehouse.engine", "'duckdb'"),
        ("lakehouse", {"compression": "gzip"}, "lakehouse.compression", "'gzip'"),
        ("lakehouse", {"driver_write_rows": -1}, "lakehouse.driver_write_rows", "-1"),
        ("simulator", {"fraud_rate": 1.5}, "simulator.fraud_rate", "1.5"),
        ("features", {"windows": ["1h", "1x"]}, "features", "'1x' is not a duration"),
        ("features", {"windows": ["1h", "60m", "1h"]}, "features", "windows listed twice"),
        ("split", {"matured": "soon"}, "split.matured", "'soon'"),
        ("split", {"test_days": 0}, "split.test_days", "0"),
        ("split", {"cutoff_date": "2026-02-30"}, "split.cutoff_date", "2026-02-30"),
        ("spark", {"interpreted_below_mib": -1}, "spark.interpreted_below_mib", "-1"),
        ("train", {"warm_start": {"recent_days": 0}}, "train.warm_start.recent_days", "0"),
        ("policy", {"on_performance_drop": "later"}, "policy.on_performance_drop", "'later'"),
        ("policy", {"on_refused_drift": "never"}, "policy.on_refused_drift", "'never'"),
        (
            "policy",
            {"triggers": {"drift": {"backoff_max_days": 0}}},
            "policy.triggers.drift.backoff_max_days",
            "0",
        ),
    ],
)
def test_a_bad_key_or_value_names_the_dotted_key_and_the_value(
    tmp_path, section, values, key, shown
):
    raw = repo_params()
    raw[section] |= values

    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, raw))
    message = str(err.value)
    assert f"  - {key}: " in message and shown in message
    assert str(tmp_path / "params.yaml") in message


def test_a_missing_required_dataset_key_is_named(tmp_path):
    raw = repo_params()
    del raw["dataset"]["label"]

    with pytest.raises(ConfigError, match=r"dataset\.label: required key is missing"):
        load_settings(write(tmp_path, raw))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"categorical_features": ["merchant_category", "amount"]},
            r"columns listed twice in the contract: \['amount'\]",
        ),
        ({"slice_columns": ["region"]}, r"slice_columns \['region'\] are not features"),
        ({"positive_label": 2}, r"positive_label 2 is not one of label_values \[0, 1\]"),
        (
            {"numeric_features": [], "categorical_features": [], "boolean_features": []},
            "declares no feature",
        ),
    ],
)
def test_the_dataset_contract_is_validated(change, expected):
    raw = repo_params()
    raw["dataset"] |= change

    with pytest.raises(ConfigError, match=expected) as err:
        settings_from_dict(raw, source="contract.yaml")
    assert str(err.value).startswith("contract.yaml: 1 invalid setting(s)")
    assert "  - dataset: " in str(err.value)


@pytest.mark.parametrize("key", ["sum_columns", "ratio_columns"])
def test_window_aggregates_name_numeric_features_of_the_contract(key):
    raw = repo_params()
    raw["features"][key] = ["amount", "channel"]  # channel is categorical

    with pytest.raises(ConfigError, match=rf"features\.{key} names \['channel'\]"):
        settings_from_dict(raw)


def test_feature_windows_are_durations_and_set_the_lookback():
    raw = repo_params()
    raw["features"]["windows"] = ["90s", "15m", "36h"]

    cfg = settings_from_dict(raw).features

    assert cfg.window_seconds() == {"90s": 90, "15m": 900, "36h": 129600}
    assert cfg.lookback_days() == 2  # 36 h reaches into the two days before


def test_the_params_env_var_is_honoured(tmp_path, monkeypatch):
    raw = repo_params()
    raw["simulator"]["days"] = 3
    path = write(tmp_path, raw)
    monkeypatch.setenv(PARAMS_ENV, str(path))
    monkeypatch.chdir(REPO)  # the repo's own params.yaml would be found otherwise

    settings = load_settings()

    assert settings.simulator.days == 3
    assert settings.base_dir == str(tmp_path)


def test_a_missing_params_file_names_the_path(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "params.yaml"
    with pytest.raises(ConfigError, match=f"params file not found: {missing}"):
        load_settings(missing)
    monkeypatch.setenv(PARAMS_ENV, str(missing))
    with pytest.raises(ConfigError, match=f"params file not found: {missing}"):
        load_settings()


def test_resolve_makes_relative_paths_relative_to_the_params_file(tmp_path):
    settings = load_settings(write(tmp_path, repo_params()))

    assert settings.resolve("data/lakehouse") == str(tmp_path / "data" / "lakehouse")
    assert settings.resolve("../shared") == str(tmp_path.parent / "shared")
    assert settings.resolve("/srv/lake") == "/srv/lake"
    assert settings.resolve("s3://bucket/lake") == "s3://bucket/lake"


@pytest.mark.parametrize(
    ("section", "change", "expected"),
    [
        ("train", {"heuristic_feature": "card_id"}, r"train\.heuristic_feature 'card_id' is not a feature"),
        ("train", {"imbalance": "smote"}, r"train\.imbalance: got 'smote'"),
        ("evaluate", {"primary_metric": "accuracy"}, r"evaluate\.primary_metric: got 'accuracy'"),
        ("evaluate", {"behavioral": [{"name": "x", "kind": "invariance", "feature": "nope", "add": 1}]},
         r"evaluate\.behavioral \['x'\]: their feature is not in the dataset contract"),
        ("evaluate", {"behavioral": [{"name": "x", "kind": "directional", "feature": "amount",
                                      "add": 1, "multiply": 2}]},
         r"behavioral test x: give exactly one of add/multiply/set"),
        ("score", {"threshold": 1.0}, r"score\.threshold: .*less than 1"),
        ("score", {"shadow": "sometimes"}, r"score\.shadow: "),
    ],
)  # fmt: skip
def test_training_and_gate_settings_name_the_bad_key(section, change, expected):
    raw = repo_params()
    raw[section] = {**raw[section], **change}

    with pytest.raises(ConfigError, match=expected):
        settings_from_dict(raw)


@pytest.mark.parametrize("entity", [None, "transaction_id"], ids=["null", "the-event-id"])
def test_a_contract_without_an_entity_has_no_window_features(entity):
    raw = repo_params()
    raw["dataset"]["entity_id"] = entity
    del raw["features"]  # the defaults: windows over an entity, which there is none of

    settings = settings_from_dict(raw)

    dataset = settings.dataset
    assert dataset.entity_id is None
    assert dataset.id_columns() == ["transaction_id", "event_time"]
    assert list(dataset.label_columns()) == ["transaction_id", "is_fraud", "label_time"]
    assert settings.features.windows == [] and settings.features.lookback_days() == 0


def test_windows_without_an_entity_name_the_keys():
    raw = repo_params()
    raw["dataset"]["entity_id"] = None

    with pytest.raises(ConfigError, match=r"features\.windows \['1h', '24h', '7d'\] needs an "
                       r"entity.*dataset\.entity_id is null.*features\.windows: \[\]"):  # fmt: skip
        settings_from_dict(raw)
    raw["features"] = {"windows": [], "sum_columns": ["amount"]}
    with pytest.raises(ConfigError, match="sum_columns and ratio_columns need windows"):
        settings_from_dict(raw)


@pytest.mark.parametrize(
    ("simulator", "enabled"),
    [("absent", False), (None, False), ({"days": 3}, True), ({"enabled": False}, False)],
    ids=["no-section", "null", "a-section", "disabled"],
)
def test_the_simulator_runs_only_when_configured(simulator, enabled):
    raw = repo_params()
    if simulator == "absent":
        del raw["simulator"]
    else:
        raw["simulator"] = simulator

    assert settings_from_dict(raw).simulator.enabled is enabled
